//! `latch-c-build plugins/order-payment-c -o order_payment_c.wasm`: builds a workflow
//! written in C into a component (see the library's docs for the steps).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use clap::Parser;
use latch_c_build::CBuild;

#[derive(Parser)]
#[command(about = "Builds a Latch workflow written in C into a Wasm component")]
struct Args {
    /// The folder with the workflow's .c files.
    app: PathBuf,
    /// The component to write.
    #[arg(short, long)]
    out: PathBuf,
    /// The repository root: its `wit/` and `sdk/c/` are used.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// The compiler: a clang for wasm32-wasi with wasi-libc, and its leading arguments.
    #[arg(long, env = "LATCH_CC", default_value = "python3 -m ziglang cc")]
    cc: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut words = args.cc.split_whitespace();
    let Some(program) = words.next() else { bail!("--cc is empty") };
    let mut cc = Command::new(program);
    cc.args(words);
    let build = CBuild {
        wit: args.root.join("wit"),
        sdk: args.root.join("sdk/c"),
        work_dir: std::env::temp_dir().join("latch-c-build"),
    };
    build.build(&args.app, &args.out, cc).with_context(|| format!("building {}", args.app.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
