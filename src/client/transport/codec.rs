//! The gRPC codec of every call: prost's encoder, and a decoder that reads each answer as one
//! slice.
//!
//! tonic hands a decoder the message in its receive buffer, which holds the whole message in
//! one piece. prost's own decoder reads it through tonic's buffer type, so each varint and
//! each field costs a call into `bytes` to move on (for a watch's created answer, about half
//! of its 2,400 instructions). Read as a `&[u8]`, the same message is parsed in place.

use std::marker::PhantomData;

use bytes::Buf;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstEncoder;

/// Sends `Req` as prost encodes it; reads `Resp` from one slice.
pub(crate) struct SliceCodec<Req, Resp>(PhantomData<fn(Req) -> Resp>);

impl<Req, Resp> Default for SliceCodec<Req, Resp> {
    fn default() -> Self {
        SliceCodec(PhantomData)
    }
}

impl<Req, Resp> Codec for SliceCodec<Req, Resp>
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    type Encode = Req;
    type Decode = Resp;
    type Encoder = ProstEncoder<Req>;
    type Decoder = SliceDecoder<Resp>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder(PhantomData)
    }
}

/// Decodes a `Resp` from the buffer's one chunk when it holds the whole message (it does with
/// tonic's buffer), else through the buffer as prost's decoder does.
pub(crate) struct SliceDecoder<Resp>(PhantomData<fn() -> Resp>);

impl<Resp: prost::Message + Default> Decoder for SliceDecoder<Resp> {
    type Item = Resp;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Resp>, Status> {
        let len = buf.remaining();
        let decoded = if buf.chunk().len() == len {
            let decoded = Resp::decode(buf.chunk());
            buf.advance(len);
            decoded
        } else {
            Resp::decode(buf)
        };
        decoded
            .map(Some)
            .map_err(|err| Status::internal(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::{BufMut, Bytes, BytesMut};
    use futures_util::StreamExt;
    use http_body::Frame;
    use proptest::prelude::*;
    use prost::Message;

    use super::SliceDecoder;
    use crate::proto::{etcdserverpb as pb, mvccpb};

    /// A response body that arrives in the given pieces, then etcd's trailers ("OK").
    struct Pieces(VecDeque<Bytes>, bool);

    impl http_body::Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if let Some(piece) = self.0.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            if std::mem::replace(&mut self.1, true) {
                return Poll::Ready(None);
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            Poll::Ready(Some(Ok(Frame::trailers(trailers))))
        }
    }

    fn response(revision: i64, keys: &[(Vec<u8>, Vec<u8>)]) -> pb::WatchResponse {
        pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                cluster_id: u64::MAX - revision as u64,
                member_id: 7,
                revision,
                raft_term: 2,
            }),
            watch_id: revision % 5,
            created: keys.is_empty(),
            events: keys
                .iter()
                .map(|(key, value)| mvccpb::Event {
                    kv: Some(mvccpb::KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        mod_revision: revision,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    proptest! {
        /// Messages framed as gRPC sends them and cut into pieces anywhere decode to what was
        /// sent, as prost's own decoder gives.
        #[test]
        fn messages_in_any_pieces_decode_whole(
            messages in prop::collection::vec(
                (1i64..1 << 40, prop::collection::vec(
                    (prop::collection::vec(any::<u8>(), 0..20), prop::collection::vec(any::<u8>(), 0..300)),
                    0..4,
                )),
                1..6,
            ),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let sent: Vec<pb::WatchResponse> =
                messages.iter().map(|(revision, keys)| response(*revision, keys)).collect();
            let mut wire = BytesMut::new();
            for message in &sent {
                wire.put_u8(0);
                wire.put_u32(message.encoded_len() as u32);
                message.encode(&mut wire).unwrap();
            }
            let wire = wire.freeze();
            let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(wire.len() + 1)).collect();
            at.sort_unstable();
            let mut pieces = VecDeque::new();
            let mut from = 0;
            for cut in at.into_iter().chain([wire.len()]) {
                pieces.push_back(wire.slice(from..cut));
                from = cut;
            }
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let received: Vec<pb::WatchResponse> = runtime.block_on(async {
                let stream = tonic::codec::Streaming::new_response(
                    SliceDecoder::<pb::WatchResponse>(std::marker::PhantomData),
                    Pieces(pieces, false),
                    http::StatusCode::OK,
                    None,
                    None,
                );
                stream.map(|message| message.unwrap()).collect().await
            });
            prop_assert_eq!(received, sent);
        }
    }
}
