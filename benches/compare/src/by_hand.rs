//! The fan-out's fourth row: etcd-client doing by hand what a `Live` does, so that the live
//! configs can be compared with the same job as well as with bare watches. Each config is read
//! (its prefix, 256 reads at a time, as the live configs are started), its value parsed and
//! kept, and watched from the revision after its read, every watch on one stream.

use etcd_client::{GetOptions, WatchOptions};
use futures_util::{stream, StreamExt};

use crate::measure::{created_then_updates, Measured, Started};

const ROOT: &str = "/fan-hand";

pub(crate) async fn fan_out(
    endpoint: &str,
    n: usize,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let client = etcd_client::Client::connect([endpoint], None).await?;
    let key = |i: usize| format!("{ROOT}/{i}/cfg/");
    let started = Started::now();
    let mut reads = stream::iter(0..n)
        .map(|i| {
            let mut client = client.clone();
            async move {
                let read = client
                    .get(key(i), Some(GetOptions::new().with_prefix()))
                    .await;
                (i, read)
            }
        })
        .buffer_unordered(256);
    // What each handle holds: the parsed value (0 when the key is absent, the struct's default).
    let mut values = vec![0u64; n];
    let mut watch: Option<etcd_client::WatchStream> = None;
    while let Some((i, read)) = reads.next().await {
        let read = read?;
        values[i] = match read.kvs().iter().find(|kv| kv.key().ends_with(b"/value")) {
            Some(kv) => std::str::from_utf8(kv.value())?.parse()?,
            None => 0,
        };
        let revision = read.header().map_or(0, |h| h.revision());
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        match &mut watch {
            Some(watch) => watch.watch(key(i), Some(options)).await?,
            None => watch = Some(client.clone().watch(key(i), Some(options)).await?),
        }
    }
    let watch = watch.ok_or("no config to watch")?;
    std::hint::black_box(&values);
    created_then_updates(watch, started, endpoint, ROOT, n).await
}
