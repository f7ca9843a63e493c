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

/// The granted names that have no value, each with why: neither a secret
/// nor a host variable, or a host variable that is not UTF-8 (which
/// `wasi:cli/environment` cannot carry).
pub fn missing<'a>(granted: &'a [String], secrets: &Secrets) -> Vec<(&'a str, &'static str)> {
    granted
        .iter()
        .filter(|name| secrets.get(name).is_none())
        .filter_map(|name| match std::env::var(name) {
            Ok(_) => None,
            Err(std::env::VarError::NotPresent) => {
                Some((name.as_str(), "is neither in [secrets] nor set on the host"))
            }
            Err(std::env::VarError::NotUnicode(_)) => Some((
                name.as_str(),
                "is set on the host but is not UTF-8 text, so the plugin does not see it",
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_granted_variable_that_is_not_utf8_is_named_with_why() {
        let name = "GATEHOUSE_TEST_NOT_UTF8";
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var(name, std::ffi::OsStr::from_bytes(b"ab\xff")) };
        let granted = [name.to_owned(), "GATEHOUSE_TEST_UNSET".to_owned()];
        let secrets = Secrets::default();
        assert!(resolve(&granted, &secrets).is_empty());
        let missing = missing(&granted, &secrets);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].1.contains("not UTF-8"), "{missing:?}");
        assert!(missing[1].1.contains("neither in [secrets]"), "{missing:?}");
    }
}
