//! `[secrets]`: values a plugin may read as env vars, taken from the host's
//! environment or from files, so they are never written in the config.

use crate::config::SecretSource;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};

/// The resolved secrets, by name.
#[derive(Default)]
pub struct Secrets {
    values: HashMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values never reach a log.
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Secrets {
    /// Reads every secret; a missing variable or unreadable file is an error
    /// that names the secret and its source.
    pub fn load(sources: &BTreeMap<String, SecretSource>) -> Result<Secrets> {
        let mut values = HashMap::new();
        for (name, source) in sources {
            let value = match source {
                SecretSource::Env { env } => std::env::var(env).map_err(|e| {
                    Error::Secret(match e {
                        std::env::VarError::NotPresent => format!(
                            "[secrets] {name}: the env var {env} is not set; export it before starting gatehouse"
                        ),
                        std::env::VarError::NotUnicode(_) => format!(
                            "[secrets] {name}: the env var {env} is not UTF-8 text; a secret must be"
                        ),
                    })
                })?,
                SecretSource::File { file } => {
                    let mut value = std::fs::read_to_string(file).map_err(|e| {
                        Error::Secret(format!(
                            "[secrets] {name}: cannot read {}: {e}",
                            file.display()
                        ))
                    })?;
                    // The one line ending an editor or `echo` adds; any
                    // other is the secret's own.
                    for ending in ["\r\n", "\n"] {
                        if value.ends_with(ending) {
                            value.truncate(value.len() - ending.len());
                            break;
                        }
                    }
                    value
                }
            };
            values.insert(name.clone(), value);
        }
        Ok(Secrets { values })
    }

    /// The value of a secret.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
}
