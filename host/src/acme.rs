//! ACME: obtains and renews the certificates of a TLS listener
//! (instant-acme), answering HTTP-01 on the plain listeners and TLS-ALPN-01
//! on the TLS one, and swaps each new certificate in live. Certificates and
//! the account are kept in `<data>/acme`.

use crate::config::{AcmeConfig, CertPair};
use crate::tls::CertStore;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where HTTP-01 validation requests arrive.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The HTTP-01 answers of pending orders, by token.
#[derive(Default)]
pub struct Challenges {
    http01: Mutex<HashMap<String, String>>,
}

impl Challenges {
    /// The key authorization for `token`, while its order is pending.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.http01.lock().unwrap().get(token).cloned()
    }
}

/// Why an ACME round failed.
type AcmeError = Box<dyn std::error::Error + Send + Sync>;

/// Keeps the certificate of `config` current in `store`, forever: loads the
/// one on disk, obtains one when there is none or it is due for renewal,
/// and retries failures with backoff.
pub fn spawn(
    config: AcmeConfig,
    store: Arc<CertStore>,
    challenges: Arc<Challenges>,
    data_dir: &Path,
    http01: bool,
) -> tokio::task::AbortHandle {
    let dir = data_dir.join("acme");
    let task = tokio::spawn(async move {
        let name = config.domains[0].clone();
        let pair = CertPair {
            cert: dir.join(format!("{name}.crt.pem")),
            key: dir.join(format!("{name}.key.pem")),
        };
        let mut backoff = Duration::from_secs(5);
        loop {
            let due = match renewal_due(&pair.cert, config.renew_before_days) {
                Some(due) => {
                    if let Err(e) = store.add_source(pair.clone()) {
                        tracing::error!("ACME certificate for {name} on disk is unusable: {e}");
                    }
                    due
                }
                None => SystemTime::now(),
            };
            if let Ok(wait) = due.duration_since(SystemTime::now()) {
                tracing::info!(
                    "ACME certificate for {name} is due for renewal in {} s",
                    wait.as_secs()
                );
                tokio::time::sleep(wait.min(Duration::from_secs(12 * 3600))).await;
                continue;
            }
            tracing::info!(
                "ordering a certificate for {} from {}",
                config.domains.join(", "),
                config.directory
            );
            match order(&config, &store, &challenges, &dir, &pair, http01).await {
                Ok(()) => {
                    backoff = Duration::from_secs(5);
                    match store.add_source(pair.clone()) {
                        Ok(()) => {
                            tracing::info!("ACME certificate for {name} obtained and swapped in")
                        }
                        Err(e) => tracing::error!(
                            "ACME certificate for {name} obtained but unusable: {e}"
                        ),
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "ACME order for {name} failed, retrying in {} s: {e}",
                        backoff.as_secs()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(3600));
                }
            }
        }
    });
    task.abort_handle()
}

/// When the certificate in `path` should be renewed: a third of its
/// lifetime before it ends, or `renew_before_days` before, whichever is
/// sooner to the end. `None` when there is no readable certificate.
fn renewal_due(path: &Path, renew_before_days: u64) -> Option<SystemTime> {
    let pem = std::fs::read(path).ok()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let validity = cert.validity();
    let not_before = u64::try_from(validity.not_before.timestamp()).ok()?;
    let not_after = u64::try_from(validity.not_after.timestamp()).ok()?;
    let margin = (renew_before_days * 86_400).min(not_after.saturating_sub(not_before) / 3);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(not_after.saturating_sub(margin)))
}

/// One order, start to finish: account, authorizations, challenges,
/// finalization, and the certificate and key written to `pair`.
async fn order(
    config: &AcmeConfig,
    store: &CertStore,
    challenges: &Challenges,
    dir: &Path,
    pair: &CertPair,
    http01: bool,
) -> Result<(), AcmeError> {
    tokio::fs::create_dir_all(dir).await?;
    let account = account(config, dir).await?;
    let identifiers: Vec<Identifier> = config
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;

    let kind = if http01 {
        ChallengeType::Http01
    } else {
        ChallengeType::TlsAlpn01
    };
    let mut pending: Vec<(String, String)> = Vec::new(); // (domain, http-01 token)
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        if authorization.status == AuthorizationStatus::Valid {
            continue;
        }
        let mut challenge = authorization
            .challenge(kind.clone())
            .ok_or_else(|| format!("the ACME server offers no {kind:?} challenge"))?;
        let domain = challenge.identifier().to_string();
        let key_authorization = challenge.key_authorization();
        if http01 {
            challenges.http01.lock().unwrap().insert(
                challenge.token.clone(),
                key_authorization.as_str().to_owned(),
            );
            pending.push((domain, challenge.token.clone()));
        } else {
            store.set_challenge(
                &domain,
                Some(alpn_challenge_key(
                    &domain,
                    key_authorization.digest().as_ref(),
                )?),
            );
            pending.push((domain, String::new()));
        }
        challenge.set_ready().await?;
    }

    let retries = RetryPolicy::default().timeout(Duration::from_secs(120));
    let status = order.poll_ready(&retries).await;
    for (domain, token) in &pending {
        if http01 {
            challenges.http01.lock().unwrap().remove(token);
        } else {
            store.set_challenge(domain, None);
        }
    }
    let status = status?;
    if status != OrderStatus::Ready {
        return Err(format!(
            "the order ended {status:?}: the ACME server could not validate the domains"
        )
        .into());
    }
    let key_pem = order.finalize().await?;
    let chain_pem = order.poll_certificate(&retries).await?;
    write_atomically(&pair.key, key_pem.as_bytes()).await?;
    write_atomically(&pair.cert, chain_pem.as_bytes()).await?;
    Ok(())
}

/// The account, created once and kept in `<dir>/account.json`.
async fn account(config: &AcmeConfig, dir: &Path) -> Result<Account, AcmeError> {
    let builder = || match &config.directory_ca {
        Some(ca) => Account::builder_with_root(ca),
        None => Account::builder(),
    };
    let saved = dir.join("account.json");
    if let Ok(json) = tokio::fs::read(&saved).await {
        let credentials: AccountCredentials = serde_json::from_slice(&json)?;
        return Ok(builder()?.from_credentials(credentials).await?);
    }
    let contact: Vec<String> = config.email.iter().map(|e| format!("mailto:{e}")).collect();
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await?;
    write_atomically(&saved, &serde_json::to_vec(&credentials)?).await?;
    Ok(account)
}

/// The self-signed certificate that answers TLS-ALPN-01 for `domain`.
fn alpn_challenge_key(
    domain: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, AcmeError> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der())?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    )))
}

async fn write_atomically(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}
