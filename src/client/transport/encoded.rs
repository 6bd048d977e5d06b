//! A request encoded once. A call may be sent several times (another endpoint, a new token):
//! each attempt sends the same bytes, so the request is neither copied nor encoded again per
//! attempt. For a Txn of many operations the copy was a few allocations per operation.

use bytes::{BufMut, Bytes};

use super::codec::SliceCodec;
use super::Conn;
use crate::client::rpc::Reply;

/// The decoding half of `prost::Message` for a message the crate only ever sends (a request
/// encoded once, a batch of reads, a watch create read from its spec): fields are skipped,
/// and there is nothing to clear. Used inside the `impl prost::Message` block.
macro_rules! never_decoded {
    () => {
        fn merge_field(
            &mut self,
            tag: u32,
            wire_type: ::prost::encoding::WireType,
            buf: &mut impl ::bytes::Buf,
            ctx: ::prost::encoding::DecodeContext,
        ) -> ::std::result::Result<(), ::prost::DecodeError> {
            ::prost::encoding::skip_field(wire_type, tag, buf, ctx)
        }

        fn clear(&mut self) {}
    };
}
pub(crate) use never_decoded;

/// A request message as it goes on the wire, sent through prost's codec unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Encoded(Bytes);

impl Encoded {
    pub(crate) fn of(message: &impl prost::Message) -> Encoded {
        Encoded(Bytes::from(message.encode_to_vec()))
    }

    /// The bytes as sent.
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.0
    }
}

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    never_decoded!();
}

impl Conn {
    /// Sends an encoded request to the unary method at `path` (`/etcdserverpb.KV/Range`), as
    /// a generated stub would send the message.
    pub(crate) async fn unary<Resp>(
        &self,
        path: &'static str,
        request: tonic::Request<Encoded>,
    ) -> Reply<Resp>
    where
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut grpc = tonic::client::Grpc::with_origin(self.channel.clone(), self.origin.clone())
            .max_encoding_message_size(self.max_send)
            .max_decoding_message_size(self.max_receive);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(path);
        grpc.unary(request, path, SliceCodec::default()).await
    }

    /// Opens the bidirectional stream at `path` (`/etcdserverpb.Watch/Watch`) with `request`'s
    /// messages going out.
    pub(crate) async fn streaming<Req, Resp>(
        &self,
        path: &'static str,
        request: tonic::Request<impl futures_core::Stream<Item = Req> + Send + 'static>,
    ) -> Result<tonic::Response<tonic::Streaming<Resp>>, tonic::Status>
    where
        Req: prost::Message + Send + 'static,
        Resp: prost::Message + Default + Send + 'static,
    {
        let mut grpc = tonic::client::Grpc::with_origin(self.channel.clone(), self.origin.clone())
            .max_encoding_message_size(self.max_send)
            .max_decoding_message_size(self.max_receive);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("Service was not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(path);
        grpc.streaming(request, path, SliceCodec::default()).await
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::Encoded;
    use crate::proto::etcdserverpb as pb;

    /// What goes on the wire is the message's own encoding, byte for byte.
    #[test]
    fn an_encoded_request_is_the_message_on_the_wire() {
        let request = pb::RangeRequest {
            key: b"/a/".to_vec(),
            range_end: b"/a0".to_vec(),
            limit: 7,
            ..Default::default()
        };
        let encoded = Encoded::of(&request);
        assert_eq!(encoded.encoded_len(), request.encoded_len());
        let sent = encoded.encode_to_vec();
        assert_eq!(sent, request.encode_to_vec());
        assert_eq!(pb::RangeRequest::decode(sent.as_slice()).unwrap(), request);
    }
}
