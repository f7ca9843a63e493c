//! The `gatehouse` command.

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatehouse::config::{Loader, Overrides};
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

fn main() -> ExitCode {
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
            };
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
    }
    Ok(())
}
