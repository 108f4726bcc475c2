//! The BuildService over gRPC (tonic), on the REST API's listener.
//!
//! * [`proto`] — the messages, server and client generated from
//!   `proto/kiln/build/v1/build_service.proto` by `build.rs`.
//! * [`service`] — the `BuildService` methods: each authenticates from the
//!   `authorization` metadata, then calls the same function the REST route
//!   calls (`api::builds::accept`, `api::contexts::receive`,
//!   `api::logs::open`…), so validation, org isolation, limits and messages
//!   are the REST API's.
//! * [`convert`] — `kiln-api`'s wire types to and from the messages, and
//!   `ApiError` to `tonic::Status`.
//!
//! [`GrpcServices`] answers every request whose content type is
//! `application/grpc`: the BuildService, the standard health service
//! (`grpc.health.v1.Health`) and server reflection (v1 and v1alpha), so
//! generic tools (grpcurl, grpc_health_probe) work against Kiln as they
//! are.

pub mod convert;
pub mod service;

/// Generated from `proto/kiln/build/v1/build_service.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("kiln.build.v1");

    /// The encoded descriptors of the proto file (and what it imports),
    /// for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/build_service_descriptor.bin"));
}

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use tonic::server::NamedService;
use tower::util::BoxCloneSyncService;
use tower::ServiceExt;

use crate::api::ApiState;

/// The largest message a client may send: a CreateBuild with a 4 MiB zip
/// and its fields, or one chunk of an upload (tonic's default is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

type GrpcService =
    BoxCloneSyncService<http::Request<Incoming>, http::Response<tonic::body::Body>, Infallible>;

/// Every gRPC service Kiln serves, by the path prefix `/<package.Service>/`.
#[derive(Clone)]
pub struct GrpcServices {
    services: Arc<Vec<(String, GrpcService)>>,
}

/// Whether a request is gRPC: its content type is `application/grpc` (or
/// `application/grpc+proto`…), whatever its path.
pub fn is_grpc(request: &http::Request<Incoming>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

impl GrpcServices {
    pub async fn new(state: Arc<ApiState>) -> GrpcServices {
        let build =
            proto::build_service_server::BuildServiceServer::new(service::BuildService::new(state))
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<proto::build_service_server::BuildServiceServer<service::BuildService>>()
            .await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .expect("the embedded descriptors are valid");
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .expect("the embedded descriptors are valid");
        let mut services: Vec<(String, GrpcService)> = Vec::new();
        fn add<S>(services: &mut Vec<(String, GrpcService)>, name: &str, service: S)
        where
            S: tower::Service<
                    http::Request<Incoming>,
                    Response = http::Response<tonic::body::Body>,
                    Error = Infallible,
                > + Clone
                + Send
                + Sync
                + 'static,
            S::Future: Send + 'static,
        {
            services.push((format!("/{name}/"), BoxCloneSyncService::new(service)));
        }
        add(
            &mut services,
            proto::build_service_server::BuildServiceServer::<service::BuildService>::NAME,
            build,
        );
        add(&mut services, "grpc.health.v1.Health", health_service);
        add(
            &mut services,
            "grpc.reflection.v1.ServerReflection",
            reflection_v1,
        );
        add(
            &mut services,
            "grpc.reflection.v1alpha.ServerReflection",
            reflection_v1alpha,
        );
        GrpcServices {
            services: Arc::new(services),
        }
    }

    /// Answer one gRPC request.
    pub async fn call(
        &self,
        request: http::Request<Incoming>,
    ) -> http::Response<tonic::body::Body> {
        let path = request.uri().path();
        let Some((_, service)) = self
            .services
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        else {
            return tonic::Status::unimplemented(format!(
                "{path}: no such gRPC service here; Kiln serves kiln.build.v1.BuildService, grpc.health.v1.Health and server reflection"
            ))
            .into_http();
        };
        let path = path.to_string();
        let started = std::time::Instant::now();
        let response = match service.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        tracing::debug!(
            path,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "gRPC request"
        );
        response
    }
}
