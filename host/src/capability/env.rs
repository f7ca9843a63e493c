//! Environment variables: a plugin sees only the host variables its
//! `[grants] env` names, read once when the plugin loads.

/// The granted variables that are set on the host, as name-value pairs.
/// A granted name that is unset is left out (and logged), like an unset
/// variable in a process.
pub fn resolve(plugin: &str, granted: &[String]) -> Vec<(String, String)> {
    granted
        .iter()
        .filter_map(|name| match std::env::var(name) {
            Ok(value) => Some((name.clone(), value)),
            Err(_) => {
                tracing::warn!(plugin, "granted env var {name} is not set on the host");
                None
            }
        })
        .collect()
}
