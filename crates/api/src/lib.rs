//! The HTTP edge of Vigia: axum routes under `/api/v1`, their OpenAPI
//! description (utoipa), the explorer at `/docs` and errors as RFC 9457
//! problem+json.
//!
//! Only this crate knows HTTP and JSON shapes; it converts from domain and
//! store types by hand and never writes to the store: changes go through the log.

mod health;
mod problem;

use std::future::Future;
use std::time::Instant;

use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;
use vigia_bus::Bus;
use vigia_store::Store;

pub use problem::Problem;

/// What handlers share.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub bus: Bus,
    pub store: Store,
    pub started: Instant,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigia API",
        description = "Telemetry for sensor fleets: readings on a NATS JetStream log, projected into SurrealDB.",
        license(name = "Apache-2.0")
    ),
    tags((name = "operations", description = "Health and metrics"))
)]
struct ApiDoc;

fn api_router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).routes(routes!(health::health))
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_router().split_for_parts();
    api
}

/// The whole HTTP application.
pub fn router(state: ApiState) -> Router {
    let (router, api) = api_router().split_for_parts();
    router.merge(SwaggerUi::new("/docs").url("/openapi.json", api)).with_state(state)
}

/// Serves on `listener` until `shutdown` resolves, then drains open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP API listening.");
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
