//! Builds a Latch workflow written in C into a component, in three steps:
//!
//! 1. wit-bindgen's C generator writes the bindings for world `workflow` (`workflow.c`,
//!    `workflow.h`, and an object that carries the component type);
//! 2. a clang for `wasm32-wasi` with wasi-libc (`zig cc`, which PyPI's `ziglang` ships)
//!    compiles the app's C files, the C SDK and the bindings into a core module;
//! 3. wit-component wraps that module with the WASI preview1 adapter into a component.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_bindgen_core::Files;
use wit_component::ComponentEncoder;
use wit_parser::Resolve;

/// The world every workflow builds against.
pub const WORLD: &str = "workflow";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading the WIT package in {path}: {message}")]
    Wit { path: PathBuf, message: String },
    #[error("generating the C bindings: {0}")]
    Bindings(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{app} has no .c files")]
    NoSources { app: PathBuf },
    #[error("running the C compiler: {0}")]
    Compiler(std::io::Error),
    #[error("the C compiler failed on {app}:\n{stderr}")]
    Compile { app: PathBuf, stderr: String },
    #[error("making a component of {app}: {message}")]
    Component { app: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io { path: path.to_path_buf(), source }
}

/// Where a build finds the WIT, the C SDK and its scratch space.
pub struct CBuild {
    /// The WIT package: the repository's `wit/`.
    pub wit: PathBuf,
    /// The C SDK: the folder with `latch.h` and `latch.c`.
    pub sdk: PathBuf,
    /// Generated bindings and core modules go here.
    pub work_dir: PathBuf,
}

impl CBuild {
    /// Builds the workflow whose C files are in `app` into the component `out`. `cc` is
    /// the compiler command, with any leading arguments and environment, such as
    /// `python3 -m ziglang cc`; the build adds target, flags and files.
    pub fn build(&self, app: &Path, out: &Path, cc: Command) -> Result<(), BuildError> {
        let name = app.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "app".into());
        let scratch = self.work_dir.join(&name);
        let bindings = scratch.join("bindings");
        self.write_bindings(&bindings)?;
        let core = scratch.join(format!("{name}.core.wasm"));
        self.compile(app, &bindings, &core, cc)?;
        let module = std::fs::read(&core).map_err(io(&core))?;
        let component = componentize(&module).map_err(|e| BuildError::Component { app: app.into(), message: e })?;
        std::fs::write(out, component).map_err(io(out))
    }

    /// Writes `workflow.c`, `workflow.h` and `workflow_component_type.o` into `dir`.
    pub fn write_bindings(&self, dir: &Path) -> Result<(), BuildError> {
        let wit_error = |e: &dyn std::fmt::Display| BuildError::Wit { path: self.wit.clone(), message: e.to_string() };
        let mut resolve = Resolve::default();
        let (package, _) = resolve.push_path(&self.wit).map_err(|e| wit_error(&format!("{e:#}")))?;
        let world = resolve.select_world(&[package], Some(WORLD)).map_err(|e| wit_error(&format!("{e:#}")))?;
        let mut files = Files::default();
        wit_bindgen_c::Opts::default()
            .build()
            .generate(&mut resolve, world, &mut files)
            .map_err(|e| BuildError::Bindings(format!("{e:#}")))?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, bytes) in files.iter() {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(io(&path))?;
        }
        Ok(())
    }

    fn compile(&self, app: &Path, bindings: &Path, core: &Path, mut cc: Command) -> Result<(), BuildError> {
        let sources = c_files(app)?;
        if sources.is_empty() {
            return Err(BuildError::NoSources { app: app.into() });
        }
        // A reactor: no `main`, the component's exports are called instead.
        cc.args(["--target=wasm32-wasi", "-mexec-model=reactor", "-Os", "-Wall", "-Wextra"])
            .arg("-I")
            .arg(bindings)
            .arg("-I")
            .arg(&self.sdk)
            .args(&sources)
            .arg(self.sdk.join("latch.c"))
            .arg(bindings.join(format!("{WORLD}.c")))
            .arg(bindings.join(format!("{WORLD}_component_type.o")))
            .arg("-o")
            .arg(core);
        let output = cc.output().map_err(BuildError::Compiler)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            return Err(BuildError::Compile { app: app.into(), stderr });
        }
        Ok(())
    }
}

/// The `.c` files directly in `dir`, sorted so builds are reproducible.
fn c_files(dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "c") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Wraps a core module (a wasm32-wasi reactor with the component type embedded) into a
/// component; the adapter maps whatever WASI preview1 calls libc makes onto preview2.
fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = ComponentEncoder::default();
    encoder.validate(true);
    encoder.module(module).map_err(|e| format!("{e:#}"))?;
    encoder
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
        .map_err(|e| format!("{e:#}"))?;
    encoder.encode().map_err(|e| format!("{e:#}"))
}
