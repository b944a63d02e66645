//! gRPC on the server's own connections (HTTP/2 beside HTTP/1.1, with or without TLS):
//! Feast's `GrpcFeatureServer` (Python's `feast listen`), `feast.serving.ServingService`
//! (the Go and Java servers' contract), `grpc.health.v1.Health` and server reflection.
//! tonic supplies the codec, statuses and routing of each service; the connections,
//! clocks and limits are the HTTP server's. `GetOnlineFeatures` is read natively as
//! `POST /get-online-features` is, its answer written from the stored bytes; whatever
//! the native path leaves goes to Feast's own servicer in Python through the
//! `Fallback`, and comes back with its status codes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use futures_util::future::BoxFuture;
use hyper::body::{Body as HttpBody, Frame};
use prost::encoding::{DecodeContext, WireType};
use prost::{DecodeError, Message};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tower_service::Service;

use super::http::{BodyRefused, NotAnswered, Refusal, Server};
use super::online::{Answer, Format, OnlineRequest};
use crate::encoding::proto::RepeatedValue;

/// Feast's contract as compiled from `proto/` by `build.rs`.
#[allow(clippy::all, clippy::pedantic, missing_docs, dead_code)]
pub mod contract {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));

    pub mod feast {
        pub mod serving {
            include!(concat!(env!("OUT_DIR"), "/feast.serving.rs"));
        }
    }
}

use contract::feast::serving::serving_service_server::{ServingService, ServingServiceServer};
use contract::feast::serving::{FeatureList, GetFeastServingInfoRequest, GetFeastServingInfoResponse};
use contract::grpc_feature_server_server::{GrpcFeatureServer, GrpcFeatureServerServer};
use contract::{PushRequest, PushResponse, WriteToOnlineStoreRequest, WriteToOnlineStoreResponse};

/// The serialized `FileDescriptorSet` of `proto/` (with its imports), for reflection and
/// for the test that compares it with the installed Feast's.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/feast_descriptors.bin"));

/// `feast.serving.GetOnlineFeaturesRequest`, with its maps as the entries sent, in
/// their order.
#[derive(Clone, PartialEq, Message)]
pub struct OnlineFeaturesRequest {
    #[prost(oneof = "FeaturesAsked", tags = "1, 2")]
    pub kind: Option<FeaturesAsked>,
    #[prost(message, repeated, tag = "3")]
    pub entities: Vec<Column>,
    #[prost(bool, tag = "4")]
    pub full_feature_names: bool,
    #[prost(message, repeated, tag = "5")]
    pub request_context: Vec<Column>,
    #[prost(bool, tag = "6")]
    pub include_feature_view_version_metadata: bool,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum FeaturesAsked {
    #[prost(string, tag = "1")]
    FeatureService(String),
    #[prost(message, tag = "2")]
    Features(FeatureList),
}

/// An entry of a `map<string, feast.types.RepeatedValue>`.
#[derive(Clone, PartialEq, Message)]
pub struct Column {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<RepeatedValue>,
}

/// A message already serialized (`feast.serving.GetOnlineFeaturesResponse` written
/// natively or by Feast), sent as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WrittenMessage(pub Bytes);

impl Message for WrittenMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Never called: the server only sends these.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0 = Bytes::new();
    }
}

/// Who a call came from and which server answers it: put in the request's extensions
/// by `Server::grpc`.
#[derive(Clone)]
pub struct Caller {
    pub server: Arc<Server>,
    pub peer: SocketAddr,
    pub scheme: &'static str,
}

/// The methods of both Feast services. Stateless: each call finds its `Caller` in the
/// request's extensions.
#[derive(Clone, Copy, Default)]
struct FeastServices;

fn caller_of<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::internal("the request reached gRPC without its server"))
}

/// A status from Feast's servicer: its code and details as the fallback carried them.
fn fallback_status(code: u16, details: String) -> Status {
    Status::new(Code::from_i32(i32::from(code)), details)
}

impl FeastServices {
    async fn online_features(
        &self,
        request: Request<OnlineFeaturesRequest>,
        method: &'static str,
    ) -> Result<Response<WrittenMessage>, Status> {
        let caller = caller_of(&request)?;
        let (metadata, _, message) = request.into_parts();
        let authorization = metadata.get("authorization").map(|value| value.as_bytes());
        if let Some(answer) = caller.server.grpc_online(&message, authorization).await? {
            return Ok(Response::new(WrittenMessage(answer)));
        }
        let (code, details, body) = caller
            .fall_back(method, metadata, Bytes::from(message.encode_to_vec()))
            .await?;
        match code {
            0 => Ok(Response::new(WrittenMessage(body))),
            code => Err(fallback_status(code, details)),
        }
    }

    async fn through_feast<M: Message, R: Message + Default>(
        &self,
        request: Request<M>,
        method: &'static str,
    ) -> Result<Response<R>, Status> {
        let caller = caller_of(&request)?;
        let (metadata, _, message) = request.into_parts();
        let body = Bytes::from(message.encode_to_vec());
        let (code, details, body) = caller.fall_back(method, metadata, body).await?;
        let answer = R::decode(body).map_err(|err| {
            Status::internal(format!(
                "Feast's servicer answered {method} with a message that does not parse: {err}"
            ))
        })?;
        match code {
            0 => Ok(Response::new(answer)),
            // As grpcio sends it: the code and details the servicer set, and its answer
            // dropped.
            code => Err(fallback_status(code, details)),
        }
    }
}

#[tonic::async_trait]
impl GrpcFeatureServer for FeastServices {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        self.through_feast(request, "Push").await
    }

    async fn write_to_online_store(
        &self,
        request: Request<WriteToOnlineStoreRequest>,
    ) -> Result<Response<WriteToOnlineStoreResponse>, Status> {
        self.through_feast(request, "WriteToOnlineStore").await
    }

    async fn get_online_features(
        &self,
        request: Request<OnlineFeaturesRequest>,
    ) -> Result<Response<WrittenMessage>, Status> {
        self.online_features(request, "GetOnlineFeatures").await
    }
}

#[tonic::async_trait]
impl ServingService for FeastServices {
    async fn get_feast_serving_info(
        &self,
        request: Request<GetFeastServingInfoRequest>,
    ) -> Result<Response<GetFeastServingInfoResponse>, Status> {
        let caller = caller_of(&request)?;
        Ok(Response::new(GetFeastServingInfoResponse {
            version: caller.server.serving_version().to_owned(),
        }))
    }

    async fn get_online_features(
        &self,
        request: Request<OnlineFeaturesRequest>,
    ) -> Result<Response<WrittenMessage>, Status> {
        self.online_features(request, "GetOnlineFeatures").await
    }
}

/// A service's answer to a call, whatever the service's type.
type Call = Box<dyn Fn(GrpcRequest) -> BoxFuture<'static, GrpcResponse> + Send + Sync>;

fn call_of<S>(service: S) -> Call
where
    S: Service<GrpcRequest, Response = GrpcResponse, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    Box::new(move |request| {
        let mut service = service.clone();
        Box::pin(async move {
            match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        })
    })
}

/// Every gRPC service the server answers, made once, by name.
pub struct GrpcServices {
    services: Vec<(&'static str, Call)>,
    health_reporter: tonic_health::server::HealthReporter,
}

/// Names a gRPC request's service by its path.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|value| value.starts_with(b"application/grpc"))
}

pub const FEATURE_SERVER: &str = "GrpcFeatureServer";
pub const SERVING: &str = "feast.serving.ServingService";

/// The methods, for the metrics' route series.
pub const METHODS: [&str; 8] = [
    "/GrpcFeatureServer/GetOnlineFeatures",
    "/GrpcFeatureServer/Push",
    "/GrpcFeatureServer/WriteToOnlineStore",
    "/feast.serving.ServingService/GetOnlineFeatures",
    "/feast.serving.ServingService/GetFeastServingInfo",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

pub type GrpcRequest = hyper::Request<tonic::body::Body>;
pub type GrpcResponse = hyper::Response<tonic::body::Body>;

/// The calls whose messages stream both ways while the call lasts: their requests are
/// read a message at a time, not whole.
const STREAMING: [&str; 3] = [
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The largest message of a health or reflection call (they name a service, a file or
/// a symbol); a streaming call reserves this much of the memory budget while it lasts.
pub const STREAM_MESSAGE_BYTES: usize = 64 * 1024;

pub fn is_streaming(path: &str) -> bool {
    STREAMING.contains(&path)
}

impl GrpcServices {
    pub fn new(max_message_bytes: usize) -> Self {
        let health_reporter = tonic_health::server::HealthReporter::new();
        let health = tonic_health::server::HealthService::from_health_reporter(health_reporter.clone());
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let services = vec![
            (
                FEATURE_SERVER,
                call_of(
                    GrpcFeatureServerServer::new(FeastServices)
                        .max_decoding_message_size(max_message_bytes)
                        .max_encoding_message_size(usize::MAX),
                ),
            ),
            (
                SERVING,
                call_of(
                    ServingServiceServer::new(FeastServices)
                        .max_decoding_message_size(max_message_bytes)
                        .max_encoding_message_size(usize::MAX),
                ),
            ),
            (
                "grpc.health.v1.Health",
                call_of(
                    tonic_health::pb::health_server::HealthServer::new(health)
                        .max_decoding_message_size(STREAM_MESSAGE_BYTES),
                ),
            ),
            (
                "grpc.reflection.v1.ServerReflection",
                call_of(
                    reflection()
                        .build_v1()
                        .expect("the descriptors compiled by build.rs are valid")
                        .max_decoding_message_size(STREAM_MESSAGE_BYTES),
                ),
            ),
            (
                "grpc.reflection.v1alpha.ServerReflection",
                call_of(
                    reflection()
                        .build_v1alpha()
                        .expect("the descriptors compiled by build.rs are valid")
                        .max_decoding_message_size(STREAM_MESSAGE_BYTES),
                ),
            ),
        ];
        Self {
            services,
            health_reporter,
        }
    }

    /// Health says the Feast services serve, or no longer do (shutting down).
    pub async fn set_serving(&self, serving: bool) {
        use tonic_health::ServingStatus;
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in ["", FEATURE_SERVER, SERVING] {
            self.health_reporter.set_service_status(service, status).await;
        }
    }

    /// Answers a gRPC request of any of the services.
    pub async fn call(&self, request: GrpcRequest) -> GrpcResponse {
        let path = request.uri().path();
        let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
        match self.services.iter().find(|(name, _)| *name == service) {
            Some((_, call)) => call(request).await,
            None => Status::unimplemented(format!("this server has no gRPC service {service:?}")).into_http(),
        }
    }
}

/// The streaming calls in service: as many at once as the server has connections, each
/// for a bounded time, and all of them ended when the server shuts down.
pub struct StreamingCalls {
    places: Arc<Semaphore>,
    limit: usize,
    lifetime: Duration,
    ending: watch::Sender<bool>,
}

impl StreamingCalls {
    pub fn new(limit: usize, lifetime: Duration) -> Self {
        Self {
            places: Arc::new(Semaphore::new(limit)),
            limit,
            lifetime,
            ending: watch::channel(false).0,
        }
    }

    /// A place for one more streaming call, or `RESOURCE_EXHAUSTED`.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, Status> {
        Arc::clone(&self.places).try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "the server has {} streaming calls (health Watch, reflection) in service, as many as \
                 --worker-connections: retry shortly",
                self.limit
            ))
        })
    }

    /// `response` sent until the call ends by itself, its lifetime (`--stream-timeout`)
    /// passes or the server shuts down; in the last two cases it ends with `UNAVAILABLE`,
    /// which tells the client to call again (on another server, when this one stops).
    /// `held` (the call's place, its memory, its connection's being in service) is let
    /// go with the response.
    pub fn bound(&self, response: GrpcResponse, held: impl Send + 'static) -> GrpcResponse {
        let lifetime = self.lifetime;
        let mut ending = self.ending.subscribe();
        let until = Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(lifetime) => format!(
                    "the call lasted {} s, as long as a streaming call may (--stream-timeout): call again",
                    lifetime.as_secs_f64()
                ),
                _ = ending.wait_for(|ending| *ending) => "the server is shutting down: call again".to_owned(),
            }
        });
        response.map(|inner| {
            tonic::body::Body::new(Bounded {
                inner,
                until,
                ended: false,
                _held: Box::new(held),
            })
        })
    }

    /// Ends every streaming call (shutdown), and those that begin after.
    pub fn end_all(&self) {
        self.ending.send_replace(true);
    }
}

/// A streaming call's response, ended with `UNAVAILABLE` when `until` resolves first.
struct Bounded {
    inner: tonic::body::Body,
    until: Pin<Box<dyn Future<Output = String> + Send>>,
    ended: bool,
    _held: Box<dyn Send>,
}

impl HttpBody for Bounded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if !matches!(&frame, Some(Ok(frame)) if frame.is_data()) {
                self.ended = true;
            }
            return Poll::Ready(frame);
        }
        let Poll::Ready(why) = self.until.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        self.ended = true;
        let mut trailers = hyper::HeaderMap::new();
        Status::unavailable(why)
            .add_header(&mut trailers)
            .map_or(Poll::Ready(None), |()| {
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            })
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// A call refused before tonic reads it (its body over a limit, late, or over the
/// memory budget), as gRPC statuses say it.
pub fn refusal(refused: &BodyRefused) -> GrpcResponse {
    let code = match refused.status {
        hyper::StatusCode::PAYLOAD_TOO_LARGE => Code::ResourceExhausted,
        hyper::StatusCode::REQUEST_TIMEOUT => Code::DeadlineExceeded,
        hyper::StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    };
    Status::new(code, refused.message.clone()).into_http()
}

impl Caller {
    /// Feast's servicer's answer to `method` of `GrpcFeatureServer`: its status code, its
    /// details and the serialized response. The call's metadata goes with it (its
    /// `authorization` authenticates it in a repo with `auth`).
    async fn fall_back(
        &self,
        method: &'static str,
        metadata: MetadataMap,
        body: Bytes,
    ) -> Result<(u16, String, Bytes), Status> {
        let headers = metadata
            .into_headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        let answer = self
            .server
            .to_feast(
                FALLBACK_METHOD.to_owned(),
                format!("/{FEATURE_SERVER}/{method}"),
                headers,
                body,
                self.peer,
                self.scheme,
            )
            .await;
        match answer {
            Ok(answer) => {
                let details = answer
                    .headers
                    .iter()
                    .find(|(name, _)| name == "grpc-message")
                    .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
                    .unwrap_or_default();
                Ok((answer.status, details, Bytes::from(answer.body)))
            }
            Err(NotAnswered::Shed(message)) => Err(Status::unavailable(message)),
            Err(NotAnswered::Dropped) => Err(Status::internal("Feast's servicer gave no answer")),
        }
    }
}

/// The method a `FallbackRequest` for Feast's gRPC servicer carries; its path is
/// `/GrpcFeatureServer/<method>`, its status the gRPC code.
pub const FALLBACK_METHOD: &str = "GRPC";

impl Server {
    /// A `GetOnlineFeatures` read natively: the serialized response, `None` for Feast's
    /// servicer, or a status for a request refused at a limit.
    async fn grpc_online(
        &self,
        message: &OnlineFeaturesRequest,
        authorization: Option<&[u8]>,
    ) -> Result<Option<Bytes>, Status> {
        // Request data goes to on-demand views, which Feast's servicer computes.
        if !message.request_context.is_empty() {
            return Ok(None);
        }
        let (features, service): (Vec<&str>, Option<&str>) = match &message.kind {
            Some(FeaturesAsked::FeatureService(service)) => (Vec::new(), Some(service)),
            Some(FeaturesAsked::Features(list)) => (list.val.iter().map(String::as_str).collect(), None),
            None => (Vec::new(), None),
        };
        let entities = message.entities.iter().map(|column| {
            let values = column
                .value
                .as_ref()
                .map_or(&[][..], |repeated| repeated.val.as_slice());
            (column.key.as_str(), values)
        });
        let parsed = OnlineRequest::from_message(features, service, entities, message.full_feature_names);
        let catalog = self.catalog();
        let mut reservation = self.reservation();
        let _place = self.enter_read().await.map_err(Status::unavailable)?;
        if !self.allows(authorization, &parsed.asked()).await {
            return Ok(None);
        }
        match self
            .read_natively(&catalog, &parsed, Format::Message, &mut reservation)
            .await
        {
            Ok(Some(Answer::Written { body, .. })) => Ok(Some(reservation.hold(body))),
            Ok(Some(Answer::Unsupported)) | Ok(None) => Ok(None),
            Err(Refusal::OverLimit(over)) => Err(Status::resource_exhausted(over.to_string())),
            Err(Refusal::OverBudget) => Err(Status::unavailable(GRPC_OVER_BUDGET)),
            Err(Refusal::TransformsBusy(busy)) => Err(Status::unavailable(busy.message())),
            Err(Refusal::Redis(err)) => Err(Status::unavailable(err.to_string())),
        }
    }
}

const GRPC_OVER_BUDGET: &str =
    "the server is holding as many answer bytes as it may (--max-buffered-mb): retry shortly";
