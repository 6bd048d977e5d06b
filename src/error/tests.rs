use super::Error;
use std::error::Error as _;

#[test]
fn errors_are_shareable_values() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Error>();
}

#[test]
fn a_cache_file_error_keeps_its_io_cause() {
    let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
    let err = Error::CacheFile {
        path: "/var/cache/gw.json".into(),
        reason: io.to_string(),
        source: Some(std::sync::Arc::new(io)),
    };
    let copy = err.clone();
    assert_eq!(
        copy.to_string(),
        "config cache file /var/cache/gw.json: denied"
    );
    let cause = copy.source().expect("the I/O error is the source");
    assert_eq!(cause.to_string(), "denied");
}
