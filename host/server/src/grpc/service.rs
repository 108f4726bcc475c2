//! The BuildService's methods: authenticate, convert, call the function
//! the REST route calls, convert back.

use std::sync::Arc;

use futures_util::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::proto;
use crate::api::logs::{LogEncoder, LogStart};
use crate::api::routes::{authenticate, Caller};
use crate::api::{builds, contexts, logs, secrets, ApiError, ApiState};

pub struct BuildService {
    state: Arc<ApiState>,
}

impl BuildService {
    pub fn new(state: Arc<ApiState>) -> Self {
        BuildService { state }
    }

    /// The caller the `authorization: Bearer <token>` metadata names.
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        Ok(authenticate(&self.state, request.metadata().as_ref())?)
    }
}

/// StreamBuildLogs' messages: one per line; a revoked token ends the
/// stream UNAUTHENTICATED, as a REST stream ends with its `error` event.
struct LogMessages;

impl LogEncoder for LogMessages {
    type Item = Result<proto::LogLine, Status>;

    fn lines(&self, lines: &[crate::store::LogLine]) -> Vec<Self::Item> {
        lines
            .iter()
            .map(|line| Ok(convert::log_line(kiln_api::LogLine::from(line))))
            .collect()
    }

    fn end(&self) -> Option<Self::Item> {
        None
    }

    fn revoked(&self) -> Option<Self::Item> {
        Some(Err(Status::unauthenticated(
            "the token this stream was opened with was revoked",
        )))
    }
}

/// A build id is required; an empty one would read as "not found".
fn build_id(id: &str) -> Result<&str, Status> {
    if id.is_empty() {
        return Err(ApiError::bad_request("`build_id` is required").into());
    }
    Ok(id)
}

#[tonic::async_trait]
impl proto::build_service_server::BuildService for BuildService {
    async fn create_build(
        &self,
        request: Request<proto::CreateBuildRequest>,
    ) -> Result<Response<proto::CreateBuildResponse>, Status> {
        let caller = self.caller(&request)?;
        let rest = convert::create_request(request.into_inner());
        let accepted = builds::accept(&self.state, &caller.org, rest, None, |_| Ok(())).await?;
        Ok(Response::new(convert::accepted(accepted)))
    }

    async fn upload_build_context(
        &self,
        request: Request<Streaming<proto::UploadBuildContextRequest>>,
    ) -> Result<Response<proto::UploadedContext>, Status> {
        let caller = self.caller(&request)?;
        let chunks = request.into_inner().map(|message| {
            message.map(|m| m.chunk).map_err(|status| {
                ApiError::bad_request(format!("the upload broke off: {}", status.message()))
            })
        });
        let received = contexts::receive(&self.state, false, None, chunks).await?;
        let record = contexts::keep(&self.state, &caller.org, received).await?;
        self.state.store.flush().await.map_err(ApiError::from)?;
        Ok(Response::new(convert::uploaded(
            kiln_api::UploadedContext::from(&record),
        )))
    }

    type StreamBuildLogsStream =
        tokio_stream::wrappers::ReceiverStream<Result<proto::LogLine, Status>>;

    async fn stream_build_logs(
        &self,
        request: Request<proto::StreamBuildLogsRequest>,
    ) -> Result<Response<Self::StreamBuildLogsStream>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let start = LogStart {
            from_start: request.from_start,
            after_seq: request.after_seq,
            follow: true,
        };
        let lines = logs::open(
            &self.state,
            &caller,
            build_id(&request.build_id)?,
            start,
            LogMessages,
        )?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            lines,
        )))
    }

    async fn get_build(
        &self,
        request: Request<proto::GetBuildRequest>,
    ) -> Result<Response<proto::Build>, Status> {
        let caller = self.caller(&request)?;
        let build = builds::get(
            &self.state,
            &caller.org,
            build_id(&request.get_ref().build_id)?,
        )?;
        Ok(Response::new(convert::build(build)))
    }

    async fn list_builds(
        &self,
        request: Request<proto::ListBuildsRequest>,
    ) -> Result<Response<proto::ListBuildsResponse>, Status> {
        let caller = self.caller(&request)?;
        let query = convert::list_query(request.into_inner())?;
        let list = builds::list_page(&self.state, &caller.org, query)?;
        Ok(Response::new(convert::build_list(list)))
    }

    async fn cancel_build(
        &self,
        request: Request<proto::CancelBuildRequest>,
    ) -> Result<Response<proto::Build>, Status> {
        let caller = self.caller(&request)?;
        let build = builds::cancel(
            &self.state,
            &caller.org,
            build_id(&request.get_ref().build_id)?,
        )
        .await?;
        Ok(Response::new(convert::build(build)))
    }

    async fn save_build_secrets(
        &self,
        request: Request<proto::SaveBuildSecretsRequest>,
    ) -> Result<Response<proto::BuildSecrets>, Status> {
        let caller = self.caller(&request)?;
        let save = convert::save_request(request.into_inner())?;
        let masked = secrets::save_secrets(&self.state, &caller.org, save).await?;
        Ok(Response::new(convert::masked(masked)))
    }

    async fn get_build_secrets(
        &self,
        request: Request<proto::GetBuildSecretsRequest>,
    ) -> Result<Response<proto::BuildSecrets>, Status> {
        let caller = self.caller(&request)?;
        let masked = secrets::masked(&self.state, &caller.org).await?;
        Ok(Response::new(convert::masked(masked)))
    }
}
