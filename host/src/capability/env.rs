//! Environment variables: a plugin sees only what its `[grants] env`
//! names: a `[secrets]` entry of that name, else the host's variable. They
//! are read for each instance, so a reloaded secret reaches the next request.

use super::secrets::Secrets;

/// The granted variables that have a value, as name-value pairs. A granted
/// name with no secret and no host variable is left out, like an unset
/// variable in a process ([`missing`] names them for the log).
pub fn resolve(granted: &[String], secrets: &Secrets) -> Vec<(String, String)> {
    granted
        .iter()
        .filter_map(|name| {
            let value = match secrets.get(name) {
                Some(value) => value.to_owned(),
                None => std::env::var(name).ok()?,
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// The granted names that have no value.
pub fn missing<'a>(granted: &'a [String], secrets: &Secrets) -> Vec<&'a str> {
    granted
        .iter()
        .filter(|name| secrets.get(name).is_none() && std::env::var_os(name).is_none())
        .map(String::as_str)
        .collect()
}
