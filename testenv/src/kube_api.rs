//! A bare Kubernetes control plane: etcd and kube-apiserver, no kubelet, scheduler or controllers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;
use tokio::sync::OnceCell;

use crate::Error;
use crate::binaries::binary;
use crate::process::{Process, START_ATTEMPTS, free_ports, http_get};

/// etcd is small and quick; kube-apiserver needs a minute or more on 2 busy cores.
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(60);
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// Lifetime of tokens from [`KubeApi::token_for`].
const TOKEN_SECONDS: i64 = 3600;

/// The instance [`KubeApi::shared`] hands out: started once per test process.
static SHARED: OnceCell<KubeApi> = OnceCell::const_new();

/// etcd + kube-apiserver on free loopback ports, in a temporary folder.
///
/// Authorization is RBAC; the admin credential is a client certificate in group
/// `system:masters` (see [`KubeApi::kubeconfig_path`]). ServiceAccount tokens are signed with a
/// generated key, so [`KubeApi::token_for`] can mint tokens for programs under test. Both servers
/// are killed on drop, and also when the test process exits (see the `process` module), which is
/// what cleans up after [`KubeApi::shared`].
///
/// If either server dies unasked, [`KubeApi::died`] says so with its log, [`KubeApi::client`] and
/// [`KubeApi::shared`] fail with that error, and dropping the handle panics with it unless it
/// was already reported (or the thread is already panicking: then it goes to stderr).
#[derive(Debug)]
pub struct KubeApi {
    // Field order matters: the servers die before the folder is removed.
    apiserver: Process,
    etcd: Process,
    dir: PathBuf,
    server_url: String,
    ca_pem: String,
    kubeconfig: PathBuf,
    kubeconfigs_written: AtomicUsize,
    _dir: Option<TempDir>,
}

impl KubeApi {
    /// Starts etcd and kube-apiserver and waits until `/readyz` answers (up to 120 s).
    pub async fn start() -> Result<Self, Error> {
        Self::start_in(false, &[], &[]).await
    }

    /// Like [`KubeApi::start`], with extra flags appended to etcd's and kube-apiserver's command
    /// lines, e.g. `--quota-backend-bytes=8589934592` or `--max-requests-inflight=800` for a
    /// big fixture. Both servers let a later flag override an earlier one, so these win over
    /// testenv's own.
    pub async fn start_with_flags(etcd: &[&str], apiserver: &[&str]) -> Result<Self, Error> {
        let owned = |flags: &[&str]| flags.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>();
        Self::start_in(false, &owned(etcd), &owned(apiserver)).await
    }

    /// One instance per test process, started by the first caller. Its servers and folder go
    /// away when the test process exits. Tests sharing it must not depend on what other tests
    /// create: use unique names.
    pub async fn shared() -> Result<&'static Self, Error> {
        let kube = SHARED
            .get_or_try_init(|| Self::start_in(true, &[], &[]))
            .await?;
        match kube.died() {
            Some(death) => Err(death),
            None => Ok(kube),
        }
    }

    async fn start_in(
        shared: bool,
        etcd_flags: &[String],
        apiserver_flags: &[String],
    ) -> Result<Self, Error> {
        let tmp = TempDir::with_prefix("spartakus-kube-")
            .map_err(|e| Error::io("creating a temporary folder", e))?;
        let dir = tmp.path().to_owned();
        // etcd's watchdog removes the folder once etcd is dead, also when this process is
        // killed; a shared instance relies on that alone, since a `static` is never dropped.
        let cleanup = Some(dir.clone());
        let tmp = if shared {
            let _ = tmp.keep();
            None
        } else {
            Some(tmp)
        };
        let mut attempt = 1;
        loop {
            let ports = free_ports(3)?;
            let (etcd_port, peer_port, api_port) = (ports[0], ports[1], ports[2]);
            let result = async {
                // Written on every attempt: a failed attempt's etcd removed the folder.
                std::fs::create_dir_all(&dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                let pki = Pki::write(&dir)?;
                let etcd =
                    start_etcd(&dir, etcd_port, peer_port, cleanup.as_deref(), etcd_flags).await?;
                let server_url = format!("https://127.0.0.1:{api_port}");
                let kubeconfig = dir.join("admin.kubeconfig");
                write_kubeconfig(
                    &kubeconfig,
                    &server_url,
                    &pki.ca,
                    serde_json::json!({
                        "client-certificate": pki.admin_cert,
                        "client-key": pki.admin_key,
                    }),
                )?;
                let apiserver = start_apiserver(
                    &dir,
                    &pki,
                    etcd_port,
                    api_port,
                    &kubeconfig,
                    apiserver_flags,
                )
                .await
                // An etcd that died meanwhile is the cause worth reporting.
                .map_err(|e| etcd.died().unwrap_or(e))?;
                Ok::<_, Error>(Self {
                    apiserver,
                    etcd,
                    dir: dir.clone(),
                    server_url,
                    ca_pem: pki.ca_pem.clone(),
                    kubeconfig,
                    kubeconfigs_written: AtomicUsize::new(0),
                    _dir: None,
                })
            }
            .await;
            match result {
                Ok(mut kube) => {
                    kube._dir = tmp;
                    kube.etcd.arm();
                    kube.apiserver.arm();
                    return Ok(kube);
                }
                // A port was taken between choosing and binding it: choose again.
                Err(e) if e.is_port_conflict() && attempt < START_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The API server's URL, e.g. `https://127.0.0.1:34567`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The PEM of the CA that signed the serving certificate (and the admin client certificate).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig file with admin rights (group `system:masters`), usable by kubectl and kube-rs.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A fresh admin client. Make one per test: a client is bound to the Tokio runtime that
    /// created it, and each `#[tokio::test]` has its own.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        if let Some(death) = self.died() {
            return Err(death);
        }
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A token for ServiceAccount `namespace/name` (TokenRequest, valid for an hour), creating the
    /// namespace and the ServiceAccount if they do not exist. The account has no RBAC bindings
    /// unless the test creates some.
    pub async fn token_for(&self, namespace: &str, name: &str) -> Result<String, Error> {
        let client = self.client().await?;
        let pp = PostParams::default();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        ignore_conflict(
            namespaces
                .create(
                    &pp,
                    &Namespace {
                        metadata: meta(None, namespace),
                        ..Default::default()
                    },
                )
                .await,
        )?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
        ignore_conflict(
            accounts
                .create(
                    &pp,
                    &ServiceAccount {
                        metadata: meta(Some(namespace), name),
                        ..Default::default()
                    },
                )
                .await,
        )?;
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(TOKEN_SECONDS),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = accounts.create_token_request(name, &pp, &request).await?;
        Ok(response.status.and_then(|s| s.token).unwrap_or_default())
    }

    /// Writes a kubeconfig that authenticates with a bearer `token` (e.g. from
    /// [`KubeApi::token_for`]) and returns its path, so a program can run as that account.
    pub fn kubeconfig_for_token(&self, token: &str) -> Result<PathBuf, Error> {
        let n = self.kubeconfigs_written.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("token-{n}.kubeconfig"));
        write_kubeconfig(
            &path,
            &self.server_url,
            &self.dir.join("ca.crt"),
            serde_json::json!({ "token": token }),
        )?;
        Ok(path)
    }

    /// If etcd or kube-apiserver died unasked (etcd is asked first: its death takes the API
    /// server down too): the error that says so, with the exit status and the end of the log.
    pub fn died(&self) -> Option<Error> {
        // Both asked, so that both deaths count as reported.
        let etcd = self.etcd.died();
        let apiserver = self.apiserver.died();
        etcd.or(apiserver)
    }

    /// The process id of `etcd`.
    pub fn etcd_pid(&self) -> Result<u32, Error> {
        self.etcd.program_pid()
    }

    /// The process id of `kube-apiserver`.
    pub fn apiserver_pid(&self) -> Result<u32, Error> {
        self.apiserver.program_pid()
    }

    /// The end of the API server's and etcd's logs, for diagnosing a failed test.
    pub fn log_tail(&self, lines: usize) -> String {
        format!(
            "kube-apiserver:\n{}\netcd:\n{}",
            self.apiserver.log_tail(lines),
            self.etcd.log_tail(lines)
        )
    }
}

/// A kube-rs client from a kubeconfig file.
async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

/// Treats 409 AlreadyExists as success.
fn ignore_conflict<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes a one-context kubeconfig (JSON, which is YAML) for `user`.
fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: serde_json::Value,
) -> Result<(), Error> {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testenv", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "testenv", "user": user}],
        "contexts": [{"name": "testenv", "context": {"cluster": "testenv", "user": "testenv", "namespace": "default"}}],
        "current-context": "testenv",
    });
    std::fs::write(path, format!("{config:#}\n"))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// The generated keys and certificates, as files in the server's folder.
struct Pki {
    ca: PathBuf,
    ca_pem: String,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
}

impl Pki {
    /// One CA signs the serving certificate (127.0.0.1, localhost) and the admin client
    /// certificate (O=system:masters); a separate ECDSA key signs ServiceAccount tokens.
    fn write(dir: &Path) -> Result<Self, Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "spartakus-testenv-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "10.0.0.1".to_owned(),
        ])?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::default();
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;

        let sa_key = KeyPair::generate()?;

        let pki = Self {
            ca: dir.join("ca.crt"),
            ca_pem,
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        };
        for (path, pem) in [
            (&pki.ca, pki.ca_pem.clone()),
            (&pki.serving_cert, serving_cert.pem()),
            (&pki.serving_key, serving_key.serialize_pem()),
            (&pki.admin_cert, admin_cert.pem()),
            (&pki.admin_key, admin_key.serialize_pem()),
            (&pki.sa_key, sa_key.serialize_pem()),
            (&pki.sa_pub, sa_key.public_key_pem()),
        ] {
            std::fs::write(path, pem)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(pki)
    }
}

async fn start_etcd(
    dir: &Path,
    port: u16,
    peer_port: u16,
    cleanup: Option<&Path>,
    extra: &[String],
) -> Result<Process, Error> {
    let client_url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let data = dir.join("etcd-data");
    // A retried start must not find the previous attempt's member data.
    let _ = std::fs::remove_dir_all(&data);
    let args: Vec<OsString> = [
        "--name=testenv".to_owned(),
        format!("--data-dir={}", data.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=testenv={peer_url}"),
        "--initial-cluster-state=new".to_owned(),
        "--unsafe-no-fsync=true".to_owned(),
        "--log-level=warn".to_owned(),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    .map(OsString::from)
    .collect();
    let mut etcd = Process::spawn(
        "etcd",
        &binary("etcd")?,
        &args,
        &dir.join("etcd.log"),
        cleanup,
    )?;
    let http = reqwest::Client::new();
    let url = format!("{client_url}/health");
    etcd.wait_until(ETCD_READY_TIMEOUT, || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = http_get(&http, &url).await?;
            if body.contains(r#""health":"true""#) {
                Ok(())
            } else {
                Err(format!("{url}: {}", body.trim()))
            }
        }
    })
    .await?;
    Ok(etcd)
}

async fn start_apiserver(
    dir: &Path,
    pki: &Pki,
    etcd_port: u16,
    port: u16,
    kubeconfig: &Path,
    extra: &[String],
) -> Result<Process, Error> {
    let path = |p: &Path| p.display().to_string();
    let args: Vec<OsString> = [
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        // The endpoint reconciler refuses a loopback address for the `kubernetes` Service.
        "--endpoint-reconciler-type=none".to_owned(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        format!("--tls-cert-file={}", path(&pki.serving_cert)),
        format!("--tls-private-key-file={}", path(&pki.serving_key)),
        format!("--client-ca-file={}", path(&pki.ca)),
        "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
        "--authorization-mode=RBAC".to_owned(),
        // A bare API server has no controller to create the default ServiceAccount.
        "--disable-admission-plugins=ServiceAccount".to_owned(),
        format!("--service-account-issuer=https://127.0.0.1:{port}"),
        format!("--service-account-key-file={}", path(&pki.sa_pub)),
        format!("--service-account-signing-key-file={}", path(&pki.sa_key)),
        "--allow-privileged=true".to_owned(),
        "--enable-priority-and-fairness=false".to_owned(),
    ]
    .into_iter()
    .chain(extra.iter().cloned())
    .map(OsString::from)
    .collect();
    let mut apiserver = Process::spawn(
        "kube-apiserver",
        &binary("kube-apiserver")?,
        &args,
        &dir.join("kube-apiserver.log"),
        None,
    )?;
    let client = client_from_kubeconfig(kubeconfig).await?;
    apiserver
        .wait_until(APISERVER_READY_TIMEOUT, || {
            let client = client.clone();
            async move {
                let request = http::Request::get("/readyz")
                    .body(Vec::new())
                    .map_err(|e| e.to_string())?;
                client
                    .request_text(request)
                    .await
                    .map(drop)
                    .map_err(|e| format!("GET /readyz: {e}"))
            }
        })
        .await?;
    Ok(apiserver)
}
