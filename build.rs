//! The dashboard (`static-web/`) is embedded in the binary
//! (`http::dashboard`): rebuild when any of its files changes.

fn main() {
    println!("cargo:rerun-if-changed=static-web");
}
