//! TLS termination with rustls: certificates from PEM files (and ACME),
//! chosen by SNI, reloaded when their files change; TLS 1.2 and 1.3 only;
//! ALPN `h2` and `http/1.1`.

use crate::config::CertPair;
use crate::error::{Error, Result};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// One loaded certificate.
struct Loaded {
    key: Arc<CertifiedKey>,
}

impl Loaded {
    fn valid_for(&self, name: &ServerName<'_>) -> bool {
        let Some(leaf) = self.key.cert.first() else {
            return false;
        };
        webpki::EndEntityCert::try_from(leaf)
            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
    }
}

/// The certificates of one TLS listener, swapped whole on reload.
pub struct CertStore {
    /// The PEM files, in order; the first is the default certificate.
    sources: Mutex<Vec<CertPair>>,
    loaded: ArcSwap<Vec<Loaded>>,
    /// TLS-ALPN-01 challenge certificates by domain, while an order is pending.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    /// Loads every pair; an empty list is allowed (ACME fills it later).
    pub fn new(sources: Vec<CertPair>) -> Result<Arc<CertStore>> {
        let loaded = sources.iter().map(load_pair).collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(CertStore {
            sources: Mutex::new(sources),
            loaded: ArcSwap::from_pointee(loaded),
            challenges: Mutex::default(),
        }))
    }

    /// The PEM files behind the store.
    pub fn files(&self) -> Vec<PathBuf> {
        let sources = self.sources.lock().unwrap();
        sources
            .iter()
            .flat_map(|p| [p.cert.clone(), p.key.clone()])
            .collect()
    }

    /// Adds a pair (an ACME certificate) unless it is there, then reloads.
    pub fn add_source(&self, pair: CertPair) -> Result<()> {
        {
            let mut sources = self.sources.lock().unwrap();
            if !sources.iter().any(|p| p.cert == pair.cert) {
                sources.push(pair);
            }
        }
        self.reload()
    }

    /// Reads every file again and swaps the set in; on any error the old set
    /// stays and the error is returned.
    pub fn reload(&self) -> Result<()> {
        let sources = self.sources.lock().unwrap().clone();
        let loaded = sources.iter().map(load_pair).collect::<Result<Vec<_>>>()?;
        self.loaded.store(Arc::new(loaded));
        Ok(())
    }

    /// Serves `key` to TLS-ALPN-01 validation of `domain` (or stops, on None).
    pub fn set_challenge(&self, domain: &str, key: Option<Arc<CertifiedKey>>) {
        let mut challenges = self.challenges.lock().unwrap();
        match key {
            Some(key) => challenges.insert(domain.to_ascii_lowercase(), key),
            None => challenges.remove(&domain.to_ascii_lowercase()),
        };
    }
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("sources", &self.sources)
            .finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().map(str::to_ascii_lowercase);
        if hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN))
        {
            return self
                .challenges
                .lock()
                .unwrap()
                .get(name.as_deref()?)
                .cloned();
        }
        let loaded = self.loaded.load();
        if let Some(server_name) = name.and_then(|n| ServerName::try_from(n).ok())
            && let Some(hit) = loaded.iter().find(|c| c.valid_for(&server_name))
        {
            return Some(hit.key.clone());
        }
        loaded.first().map(|c| c.key.clone())
    }
}

fn load_pair(pair: &CertPair) -> Result<Loaded> {
    let bad = |path: &Path, message: String| Error::Config {
        file: path.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            bad(
                &pair.cert,
                format!("cannot read the certificate chain: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(bad(&pair.cert, "no PEM certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&pair.key)
        .map_err(|e| bad(&pair.key, format!("cannot read the private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| bad(&pair.key, format!("unsupported private key: {e}")))?;
    let key = CertifiedKey::new(chain, signer);
    key.keys_match().map_err(|e| {
        bad(
            &pair.key,
            format!("the key does not match {}: {e}", pair.cert.display()),
        )
    })?;
    Ok(Loaded { key: Arc::new(key) })
}

/// The rustls configuration of a TLS listener over `store`.
pub fn server_config(store: Arc<CertStore>, acme: bool) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Engine(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    // Resumption both ways: session IDs and stateless tickets.
    config.session_storage = ServerSessionMemoryCache::new(16 * 1024);
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| Error::Engine(format!("TLS tickets: {e}")))?;
    Ok(Arc::new(config))
}

/// Reloads `store` whenever one of its files changes, until the returned
/// watcher is dropped. A bad file keeps the old certificates serving.
pub fn watch(store: Arc<CertStore>) -> Result<Option<notify::RecommendedWatcher>> {
    use notify::Watcher;
    let files = store.files();
    if files.is_empty() {
        return Ok(None);
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watched: Vec<PathBuf> = files
        .iter()
        .map(|f| std::fs::canonicalize(f).unwrap_or(f.clone()))
        .collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
            && event.paths.iter().any(|p| {
                watched
                    .iter()
                    .any(|w| p == w || w.parent() == Some(p.as_path()))
            })
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| Error::io("watching certificate files", std::io::Error::other(e)))?;
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| {
            std::fs::canonicalize(f)
                .ok()?
                .parent()
                .map(Path::to_path_buf)
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| {
                Error::io(
                    format!("watching {}", dir.display()),
                    std::io::Error::other(e),
                )
            })?;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            while let Ok(Some(())) =
                tokio::time::timeout(crate::plugin::watch::DEBOUNCE, rx.recv()).await
            {}
            match store.reload() {
                Ok(()) => tracing::info!("reloaded TLS certificates"),
                Err(e) => tracing::error!(
                    "TLS certificates not reloaded, the previous ones keep serving: {e}"
                ),
            }
        }
    });
    Ok(Some(watcher))
}
