//! The `gatehouse` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatehouse::config::{Loader, Overrides};
use gatehouse::plugin::source::{self, Lang, template, toolchain};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A WebAssembly plugin host: listeners, routing and sandboxed wasi:http
/// components in one binary.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the plugins folder.
    Serve {
        /// The config file (default: ./gatehouse.toml when it exists).
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
        /// An address to listen on, IP:PORT; repeat for several. Replaces
        /// every [[listener]] of the file.
        #[arg(long, env = "GATEHOUSE_LISTEN", value_delimiter = ',')]
        listen: Vec<String>,
        /// The plugins folder.
        #[arg(long, env = "GATEHOUSE_PLUGINS")]
        plugins: Option<PathBuf>,
        /// The admin API address, IP:PORT.
        #[arg(long, env = "GATEHOUSE_ADMIN")]
        admin: Option<String>,
        /// The data folder (compiled code cache, plugin builds).
        #[arg(long, env = "GATEHOUSE_DATA")]
        data: Option<PathBuf>,
    },
    /// Make a plugin source folder DIR/NAME/ and its sidecar DIR/NAME.toml.
    New {
        /// The plugin's name: its folder and its mount path /NAME.
        name: String,
        /// The language: rust, python or js.
        #[arg(long)]
        lang: String,
        /// Where to make it (default: the plugins folder of the config).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The config file, for the default plugins folder.
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Build one plugin source folder into a .wasm component.
    Build {
        /// The source folder.
        path: PathBuf,
        /// Where to write the component (default: NAME.wasm beside the folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Say which plugin languages this machine can build, and how to add the others.
    Doctor,
    /// Validate the config and every plugin, then exit.
    Check {
        /// The config file (default: ./gatehouse.toml when it exists).
        #[arg(long, env = "GATEHOUSE_CONFIG")]
        config: Option<PathBuf>,
        /// The plugins folder.
        #[arg(long, env = "GATEHOUSE_PLUGINS")]
        plugins: Option<PathBuf>,
        /// The data folder.
        #[arg(long, env = "GATEHOUSE_DATA")]
        data: Option<PathBuf>,
    },
}

/// The stack of every thread the host starts (bytes), unless the
/// operator sets RUST_MIN_STACK. Threads run SQLite, whose parser and
/// planner recurse over a plugin's statement and schema (SQLite 3.46 has
/// no bound on the depth of chained views or WITH tables), and sqlx gives
/// its worker threads Rust's default of 2 MiB. The size is address space,
/// not memory: pages are taken only when a thread reaches them.
const THREAD_STACK: &str = "67108864";

fn main() -> ExitCode {
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        // SAFETY: no other thread runs yet. std reads the variable when
        // it starts the first thread and keeps the value.
        unsafe { std::env::set_var("RUST_MIN_STACK", THREAD_STACK) };
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cranelift_codegen=warn,wasmtime=warn".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            config,
            listen,
            plugins,
            admin,
            data,
        } => {
            let loader = Loader {
                file: config,
                overrides: Overrides {
                    listen,
                    plugins,
                    admin,
                    data,
                },
            }
            .pinned();
            let config = loader.load()?;
            let (trigger, shutdown) = gatehouse::shutdown::channel();
            gatehouse::shutdown::on_signals(trigger);
            gatehouse::serve(config, Some(loader), shutdown).await?;
        }
        Command::Check {
            config,
            plugins,
            data,
        } => {
            let config = Loader {
                file: config,
                overrides: Overrides {
                    plugins,
                    data,
                    ..Overrides::default()
                },
            }
            .load()?;
            for line in gatehouse::check(&config).await.context("check failed")? {
                println!("{line}");
            }
            println!("config and plugins are valid");
        }
        Command::New {
            name,
            lang,
            dir,
            config,
        } => {
            let Some(lang) = Lang::parse(&lang) else {
                anyhow::bail!("unknown language `{lang}`: use one of {}", languages());
            };
            let dir = match dir {
                Some(dir) => dir,
                None => {
                    Loader {
                        file: config,
                        overrides: Overrides::default(),
                    }
                    .load()?
                    .server
                    .plugins
                }
            };
            for path in template::new_plugin(&name, lang, &dir)? {
                println!("wrote {}", path.display());
            }
            println!(
                "gatehouse serves it at /{name} (and rebuilds it on every save) when {} is its plugins folder",
                dir.display()
            );
        }
        Command::Build { path, out } => {
            let Some(lang) = Lang::detect(&path) else {
                anyhow::bail!(
                    "{} is not a plugin source folder: it needs one of {}",
                    path.display(),
                    Lang::ALL.map(Lang::marker).join(", ")
                );
            };
            let path = std::fs::canonicalize(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "plugin".to_owned());
            let out = out.unwrap_or_else(|| path.with_file_name(format!("{name}.wasm")));
            let build_dir = std::env::temp_dir().join("gatehouse-build");
            let wasm = source::build(lang, &name, &path, &build_dir).await?;
            std::fs::write(&out, &wasm).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "built {} ({lang}, {} KiB)",
                out.display(),
                wasm.len() / 1024
            );
        }
        Command::Doctor => {
            let mut missing = 0;
            for check in toolchain::check_all().await {
                match check.found {
                    Ok(found) => println!("{:<7} ok       {found}", check.lang.name()),
                    Err(fix) => {
                        missing += 1;
                        println!("{:<7} missing  fix: {fix}", check.lang.name());
                    }
                }
            }
            if missing > 0 {
                println!("scripts/install-toolchains installs every one of them");
                anyhow::bail!("{missing} language(s) cannot be built on this machine");
            }
        }
    }
    Ok(())
}

fn languages() -> String {
    Lang::ALL.map(Lang::name).join(", ")
}
