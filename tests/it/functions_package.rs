//! `handler package`: the deployable Functions app laid out and zipped, from
//! the debug build (CI ships a release build the same way).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn package(out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["package", "--root"])
        .arg(root())
        .arg("--out")
        .arg(out)
        .output()
        .expect("handler runs")
}

fn function_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_package_has_host_json_function_folders_at_the_root_and_an_executable_handler() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("app");
    let o = package(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The folder.
    let mut expected: Vec<String> = vec!["handler".into(), "host.json".into()];
    expected.extend(function_names());
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(
        found, expected,
        "exactly host.json, the handler and one folder per function at the root"
    );
    assert_eq!(
        std::fs::read(out.join("host.json")).unwrap(),
        std::fs::read(root().join("host.json")).unwrap()
    );
    for name in function_names() {
        let src =
            std::fs::read(root().join("functions").join(&name).join("function.json")).unwrap();
        assert_eq!(
            std::fs::read(out.join(&name).join("function.json")).unwrap(),
            src,
            "{name}"
        );
        assert_eq!(
            std::fs::read_dir(out.join(&name)).unwrap().count(),
            1,
            "{name} holds function.json only"
        );
    }
    let handler = out.join("handler");
    assert_eq!(
        std::fs::metadata(&handler).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read(&handler).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_handler")).unwrap()
    );
    assert!(!out.join("local.settings.json").exists());

    // The zip next to it: the same files, the same modes.
    let zip_path = tmp.path().join("app.zip");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).expect("app.zip")).unwrap();
    let mut entries = BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        if f.is_dir() {
            assert!(
                function_names().contains(&f.name().trim_end_matches('/').to_string()),
                "dir {}",
                f.name()
            );
            continue;
        }
        let mode = f.unix_mode().expect("unix mode stored") & 0o777;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        entries.insert(f.name().to_string(), (mode, bytes));
    }
    let mut want: Vec<String> = vec!["handler".into(), "host.json".into()];
    want.extend(
        function_names()
            .into_iter()
            .map(|n| format!("{n}/function.json")),
    );
    want.sort();
    assert_eq!(entries.keys().cloned().collect::<Vec<_>>(), want);
    for (name, (mode, bytes)) in &entries {
        assert_eq!(
            *bytes,
            std::fs::read(out.join(name)).unwrap(),
            "{name} in the zip"
        );
        assert_eq!(
            *mode,
            if name == "handler" { 0o755 } else { 0o644 },
            "{name} mode"
        );
    }

    // Packaging again replaces the previous package.
    let again = package(&out);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn packaging_refuses_a_folder_that_is_not_a_previous_package() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let o = package(tmp.path());
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(tmp.path().join("precious.txt").exists());
}
