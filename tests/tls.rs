//! TLS with rustls against etcd serving https, with certificates made by the test itself:
//! server verification against a private CA, mutual TLS, and the errors when either side's
//! certificate is missing or untrusted.

mod support;

use std::time::Duration;

use etcd_config::{Client, ConnectOptions, Error, TlsOptions};
use support::Etcd;

/// With the CA that signed etcd's certificate, a client reads and writes over https.
#[tokio::test]
async fn server_tls() {
    let etcd = Etcd::builder(1).tls(false).start().await;
    let tls = etcd.tls.as_ref().unwrap();
    let options = ConnectOptions::default().with_tls(TlsOptions::new().ca_file(&tls.ca));
    let client = Client::connect(etcd.endpoints(), options).await.unwrap();
    let put = client.kv().put("/tls", "yes").await.unwrap();
    let got = client.kv().get("/tls").await.unwrap();
    assert_eq!(got.kvs[0].mod_revision, put.header.revision);

    // The same endpoint written as a URL.
    let url = format!("https://{}", etcd.endpoint(0));
    let options = ConnectOptions::default().with_tls(TlsOptions::new().ca_file(&tls.ca));
    let by_url = Client::connect([url], options).await.unwrap();
    assert_eq!(by_url.kv().get("/tls").await.unwrap().kvs[0].value, b"yes");
}

/// With --client-cert-auth, a client presenting a certificate from the CA is served; one
/// without a certificate cannot connect.
#[tokio::test]
async fn mutual_tls() {
    let etcd = Etcd::builder(1).tls(true).start().await;
    let tls = etcd.tls.as_ref().unwrap();
    let with_cert = ConnectOptions::default().with_tls(
        TlsOptions::new()
            .ca_file(&tls.ca)
            .client_identity(&tls.client_cert, &tls.client_key),
    );
    let client = Client::connect(etcd.endpoints(), with_cert).await.unwrap();
    client.kv().put("/mtls", "yes").await.unwrap();

    let without_cert = ConnectOptions::default()
        .dial_timeout(Duration::from_secs(2))
        .with_tls(TlsOptions::new().ca_file(&tls.ca));
    let err = Client::connect(etcd.endpoints(), without_cert)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&etcd.endpoint(0)), "{err}");
}

/// A server whose certificate does not chain to the configured CA is refused (here the CA of
/// another test cluster).
#[tokio::test]
async fn untrusted_server_is_refused() {
    let etcd = Etcd::builder(1).tls(false).start().await;
    let other = Etcd::builder(1).tls(false).start().await;
    let wrong_ca = &other.tls.as_ref().unwrap().ca;
    let options = ConnectOptions::default()
        .dial_timeout(Duration::from_secs(2))
        .with_tls(TlsOptions::new().ca_file(wrong_ca));
    let err = Client::connect(etcd.endpoints(), options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
}

/// Plain http to an https endpoint, an https URL without TLS options, a missing CA file and TLS
/// without one are clear errors.
#[tokio::test]
async fn tls_configuration_errors() {
    let err = Client::connect(["https://127.0.0.1:1"], ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ClientOptions { .. }), "{err}");
    assert!(err.to_string().contains("https://127.0.0.1:1"), "{err}");

    let options =
        ConnectOptions::default().with_tls(TlsOptions::new().ca_file("/nonexistent/ca.pem"));
    let err = Client::connect(["127.0.0.1:1"], options).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");

    // TLS without a CA file would trust nothing: refused by name, before any connection.
    let options = ConnectOptions::default().with_tls(TlsOptions::new());
    let err = Client::connect(["127.0.0.1:1"], options).await.unwrap_err();
    assert!(matches!(err, Error::ClientOptions { .. }), "{err}");
    assert!(err.to_string().contains("TlsOptions::ca_file"), "{err}");
}
