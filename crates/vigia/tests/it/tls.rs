//! NATS over TLS with client certificates, the way docs/security.md says to
//! run it: a private CA, a server certificate for 127.0.0.1 and one for
//! Vigia, made with `openssl` for the test. Plain and unverified clients are
//! turned away; Vigia with the CA and its certificate ingests as usual.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vigia_bus::{Access, Bus, Tls};
use vigia_testkit::NatsServer;

use crate::common::{TestEnv, persister_only, wait_for};

/// Runs `openssl` with `args` in `dir`, failing the test with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install it with `apt-get install -y openssl`"));
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and two certificates it signed: `server` for 127.0.0.1, `client` for Vigia.
fn certificates(dir: &Path) {
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca =
        vec!["req", "-x509", "-days", "2", "-subj", "/CN=Vigia test CA", "-keyout", "ca.key", "-out", "ca.crt"];
    ca.extend(key);
    openssl(dir, &ca);
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "subjectAltName=DNS:vigia\nextendedKeyUsage=clientAuth\n"),
    ] {
        let (k, csr, crt, extfile) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        std::fs::write(dir.join(&extfile), ext).unwrap();
        let subject = format!("/CN={name}");
        let mut req = vec!["req", "-subj", &subject, "-keyout", &k, "-out", &csr];
        req.extend(key);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extfile,
                "-out",
                &crt,
            ],
        );
    }
}

fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")))
}

#[tokio::test]
async fn nats_over_tls_admits_only_verified_clients_and_vigia_ingests() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let (cert, key) = paths(certs.path(), "server");
    let nats = NatsServer::start_with_conf(
        &format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true, timeout: 2 }}",
            cert.display().to_string(),
            key.display().to_string(),
            certs.path().join("ca.crt").display().to_string()
        ),
        &[],
    );
    let url = nats.url().replacen("nats://", "tls://", 1);
    let ca = Some(certs.path().join("ca.crt"));
    let client = Some(paths(certs.path(), "client"));

    let refused = |access: Access| {
        let url = url.clone();
        async move {
            let plain = url.replacen("tls://", "nats://", 1);
            let target = if access.tls.is_some() { url } else { plain };
            tokio::time::timeout(Duration::from_secs(10), Bus::connect_as(&target, &access)).await
        }
    };
    let plain = refused(Access::default()).await;
    assert!(matches!(plain, Ok(Err(_))), "a plain client is refused: {plain:?}");
    let unverified =
        refused(Access { tls: Some(Tls { ca: ca.clone(), client_cert: None }), ..Access::default() }).await;
    assert!(matches!(unverified, Ok(Err(_))), "a client without a certificate is refused: {unverified:?}");
    let untrusting = refused(Access { tls: Some(Tls { ca: None, client_cert: client.clone() }), ..Access::default() });
    let untrusting = untrusting.await;
    assert!(matches!(untrusting, Ok(Err(_))), "the server's private CA is not trusted by default: {untrusting:?}");

    // Vigia configured as docs/security.md says: CA, client certificate and key.
    let env = TestEnv::start_on(nats, |c| {
        c.nats.url = url.clone();
        c.nats.tls_ca = ca.clone();
        c.nats.tls_cert = client.as_ref().map(|(crt, _)| crt.clone());
        c.nats.tls_key = client.as_ref().map(|(_, k)| k.clone());
    })
    .await;
    assert!(env.bus.client().server_info().tls_required, "the connection is TLS");
    let running = env.run(persister_only());
    for v in 0..10 {
        env.publish_raw("brasil.sudeste.tls", format!(r#"{{"value": {v}}}"#).as_bytes()).await;
    }
    wait_for("10 readings stored over TLS", Duration::from_secs(30), || async {
        env.store.events_of("brasil.sudeste.tls").await.unwrap().len() == 10
    })
    .await;
    running.shutdown().await;
}
