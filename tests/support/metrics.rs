//! etcd's own counters, read from a member's `/metrics` endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::Etcd;

impl Etcd {
    /// etcd's Prometheus metrics from member `i` (plain HTTP clusters only).
    pub fn metrics(&self, i: usize) -> String {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.members[i].client_port)).expect("metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("metrics request");
        let mut body = String::new();
        stream.read_to_string(&mut body).expect("metrics response");
        body
    }

    /// How many calls of `method` member `i` answered with gRPC code `code` (e.g. `OK`).
    pub fn grpc_handled(&self, i: usize, method: &str, code: &str) -> u64 {
        self.grpc_counter(i, "grpc_server_handled_total", method, Some(code))
    }

    /// How many calls (streams, for a streaming method) of `method` member `i` has started.
    pub fn grpc_started(&self, i: usize, method: &str) -> u64 {
        self.grpc_counter(i, "grpc_server_started_total", method, None)
    }

    /// How many messages member `i` has received on calls of `method`.
    pub fn grpc_received(&self, i: usize, method: &str) -> u64 {
        self.grpc_counter(i, "grpc_server_msg_received_total", method, None)
    }

    fn grpc_counter(&self, i: usize, counter: &str, method: &str, code: Option<&str>) -> u64 {
        let series = format!("{counter}{{");
        let needle_method = format!("grpc_method=\"{method}\"");
        let needle_code = code.map(|code| format!("grpc_code=\"{code}\""));
        self.metrics(i)
            .lines()
            .filter(|l| l.starts_with(&series) && l.contains(&needle_method))
            .filter(|l| needle_code.as_ref().is_none_or(|code| l.contains(code)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}
