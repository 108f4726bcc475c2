//! Issue 12: `kiln serve --tls-cert --tls-key` serves HTTPS (HTTP/2 by
//! ALPN); the CLI trusts the system's roots plus `--ca-cert`, and refuses
//! to send a token over plain http to a host that is not this machine
//! unless told `--insecure`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kiln_tests::*;

/// `kiln org list` against `server` with `token`, plus `extra` flags.
fn org_list(
    server: &str,
    token: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut args = vec!["org", "list", "--server", server, "--token", token];
    args.extend_from_slice(extra);
    kiln(&args, env)
}

fn kiln(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("KILN_CA_CERT")
        .env_remove("KILN_INSECURE")
        .env("XDG_CONFIG_HOME", "/nonexistent-kiln-config")
        .envs(env.iter().copied())
        .output()
        .expect("run kiln")
}

/// A CA, and a certificate it signed for `localhost` and 127.0.0.1:
/// writes `ca.pem`, `server.pem` and `server.key` into `dir`.
fn certificates(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kiln test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

/// The protocol the server picks by ALPN when offered h2 and http/1.1.
async fn negotiated_protocol(addr: &str, ca: &Path) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the TLS handshake with the CA's certificate");
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

#[tokio::test]
async fn issue_12_tls_serves_https_with_h2_grpc_included_and_the_cli_trusts_only_what_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let ca = dir.path().join("ca.pem");
    let server = KilnProcess::spawn(
        env!("CARGO_BIN_EXE_kiln").as_ref(),
        &dir.path().join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let url = server.server_url().to_string();
    let addr = url
        .strip_prefix("https://")
        .expect("an https:// server")
        .to_string();
    let token = server.token.clone();

    // ALPN picks HTTP/2.
    assert_eq!(
        negotiated_protocol(&addr, &ca).await.as_deref(),
        Some(&b"h2"[..])
    );

    // The BuildService over the same TLS port (HTTP/2 by ALPN), from
    // Python grpcio trusting the CA.
    let python = python_venv("grpc", GRPC_PYTHON_PACKAGES);
    let grpc = Command::new(python)
        .arg(workspace().join("tests/grpc/over_tls.py"))
        .args([&addr, ca.to_str().unwrap(), &token])
        .arg(workspace())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        grpc.status.success(),
        "{}",
        String::from_utf8_lossy(&grpc.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&grpc.stdout).unwrap();
    assert_eq!(report["health"], "SERVING");
    assert_eq!(report["builds"], 0);

    // With the CA the CLI works, by flag or environment.
    let listed = org_list(&url, &token, &["--ca-cert", ca.to_str().unwrap()], &[]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("default"));
    let by_env = org_list(&url, &token, &[], &[("KILN_CA_CERT", ca.to_str().unwrap())]);
    assert!(
        by_env.status.success(),
        "{}",
        String::from_utf8_lossy(&by_env.stderr)
    );

    // Without it the certificate is not trusted, and the error says so.
    let untrusted = org_list(&url, &token, &[], &[]);
    assert!(!untrusted.status.success());
    let err = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        err.contains("cannot reach") && err.to_lowercase().contains("certificate"),
        "{err}"
    );

    // Plain http to the TLS port is not served.
    let plain = org_list(&format!("http://{addr}"), &token, &[], &[]);
    assert!(!plain.status.success());

    // A bad certificate file stops `kiln serve` with a message naming it.
    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "not a certificate").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data-broken"))
        .args([
            "--tls-cert",
            broken.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("TLS") && err.contains("broken.pem"), "{err}");
}

#[tokio::test]
async fn issue_12_the_cli_sends_no_token_over_plain_http_to_another_host_unless_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let server = KilnProcess::spawn(env!("CARGO_BIN_EXE_kiln").as_ref(), dir.path(), &[]);
    let port = server.server_url().rsplit(':').next().unwrap().to_string();
    // 0.0.0.0 reaches this machine's listener, but is not a loopback name:
    // the CLI treats it as another host.
    let elsewhere = format!("http://0.0.0.0:{port}");
    let refused = org_list(&elsewhere, &server.token, &[], &[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("plain http") && err.contains("--insecure"),
        "{err}"
    );

    let allowed = org_list(&elsewhere, &server.token, &["--insecure"], &[]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    // This machine by name is fine without it.
    let local = org_list(&format!("http://localhost:{port}"), &server.token, &[], &[]);
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
}
