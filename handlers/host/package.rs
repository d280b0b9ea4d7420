//! `handler package --out DIR`: the deployable Functions app. `DIR` gets
//! `host.json`, one folder per function at the root (`<Name>/function.json`)
//! and the `handler` binary (mode 0755); `DIR.zip` holds the same files
//! with the same modes, ready for zip deploy (`az functionapp deployment
//! source config-zip`). `local.settings.json` is never packaged.

use anyhow::{Context, bail};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The executable's name in the app (host.json `defaultExecutablePath`).
pub const EXECUTABLE: &str = "handler";

/// Lay the app out in `out` and zip it to `out` + `.zip`; returns the zip's path.
pub fn package(root: &Path, binary: Option<&Path>, out: &Path) -> anyhow::Result<PathBuf> {
    let host_json = root.join("host.json");
    let functions_dir = root.join("functions");
    if !host_json.is_file() || !functions_dir.is_dir() {
        bail!(
            "{} has no host.json and functions/ (pass --root <project root>)",
            root.display()
        );
    }
    let binary = match binary {
        Some(b) => b.to_path_buf(),
        None => std::env::current_exe().context("locating this binary")?,
    };
    if !binary.is_file() {
        bail!("handler binary {} not found", binary.display());
    }
    prepare_out(out)?;

    // (path in the app, source, executable)
    let mut files: Vec<(String, PathBuf, bool)> = vec![("host.json".into(), host_json, false)];
    let mut names: Vec<String> = fs::read_dir(&functions_dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("function.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("{} holds no function folders", functions_dir.display());
    }
    for name in &names {
        files.push((
            format!("{name}/function.json"),
            functions_dir.join(name).join("function.json"),
            false,
        ));
    }
    files.push((EXECUTABLE.into(), binary, true));

    for (rel, src, exec) in &files {
        let dst = out.join(rel);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(src, &dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
        set_mode(&dst, if *exec { 0o755 } else { 0o644 })?;
    }

    let zip_path = zip_path(out);
    write_zip(&zip_path, out, &files)?;
    Ok(zip_path)
}

/// `dist/app` -> `dist/app.zip`.
pub fn zip_path(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "app".into());
    name.push(".zip");
    out.with_file_name(name)
}

/// `out` must be missing, empty, or a previous package (which is replaced).
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        let empty = fs::read_dir(out)?.next().is_none();
        if !empty && !out.join("host.json").is_file() {
            bail!(
                "{} is not empty and not a previous package; choose another --out",
                out.display()
            );
        }
        if !empty {
            fs::remove_dir_all(out)?;
        }
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

fn write_zip(zip_path: &Path, out: &Path, files: &[(String, PathBuf, bool)]) -> anyhow::Result<()> {
    let file =
        fs::File::create(zip_path).with_context(|| format!("creating {}", zip_path.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let mut dirs_done = std::collections::BTreeSet::new();
    for (rel, _, exec) in files {
        if let Some((dir, _)) = rel.rsplit_once('/')
            && dirs_done.insert(dir.to_string())
        {
            zip.add_directory(
                format!("{dir}/"),
                zip::write::SimpleFileOptions::default().unix_permissions(0o755),
            )?;
        }
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(if *exec { 0o755 } else { 0o644 })
            .large_file(false);
        zip.start_file(rel.as_str(), options)?;
        zip.write_all(&fs::read(out.join(rel))?)?;
    }
    zip.finish()?;
    Ok(())
}
