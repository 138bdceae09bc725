//! The HTTP edge of Vigia: axum routes under `/api/v1`, their OpenAPI
//! description (utoipa), the explorer at `/docs` and errors as RFC 9457
//! problem+json.
//!
//! Only this crate knows HTTP and JSON shapes; it converts from domain and
//! store types by hand and never writes to the store: changes go through the log.

mod alerts;
mod audit;
mod auth;
mod changes;
mod counts;
mod dashboard;
mod datasets;
mod dead;
mod events;
mod export;
mod generate;
mod health;
mod import;
mod ingest;
mod live;
mod metrics;
mod pressure;
mod problem;
mod rules;
mod sensors;
mod server;
mod stats;
mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;
use vigia_bus::Bus;
use vigia_store::Store;

pub use audit::{AuditError, AuditReport, TagReport, audit};
pub use auth::{Auth, Scope, Token, hash_token};
pub use datasets::DatasetCache;
pub use metrics::{PERSISTER, PersisterStats, PersisterTotals};
pub use pressure::{Pressure, PressureLimits};
pub use problem::Problem;
pub use server::{BACKLOG, Limits, bind, serve};

/// The largest request body accepted (10,000 readings fit comfortably).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// The most events one query may scan before it must be narrowed.
pub const SCAN_CAP: usize = 2_000_000;

/// What handlers share, behind one `Arc`: axum clones the state for every
/// request and every stateful middleware, and a deep clone (the roots, the
/// rules, the tokens, the NATS client) was a dozen allocations per request.
#[derive(Clone, Debug)]
pub struct ApiState(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    shared: Shared,
    /// Small ingest batches of concurrent requests, published together.
    group: vigia_bus::GroupPublisher,
}

impl ApiState {
    /// The state of one server; starts its group publisher on the current runtime.
    pub fn new(shared: Shared) -> ApiState {
        let group = vigia_bus::GroupPublisher::spawn(shared.bus.publisher(), vigia_bus::GroupLimits::default());
        ApiState(Arc::new(Inner { shared, group }))
    }

    pub(crate) fn group(&self) -> &vigia_bus::GroupPublisher {
        &self.0.group
    }
}

impl std::ops::Deref for ApiState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0.shared
    }
}

/// The parts of [`ApiState`].
#[derive(Debug)]
pub struct Shared {
    pub bus: Bus,
    pub store: Store,
    pub started: Instant,
    /// The stream's roots: the first token every tag must have.
    pub roots: Vec<String>,
    pub auth: Auth,
    /// The configured alert rules, in force until the first change through the API.
    pub default_rules: Vec<vigia_domain::Rule>,
    /// The store's lag behind the log, and when ingest refuses work.
    pub pressure: Pressure,
    /// Loaded datasets kept in memory for queries.
    pub datasets: DatasetCache,
}

/// A store failure as a problem: too broad a query is the caller's to fix,
/// anything else is the store's.
pub(crate) fn store_problem(e: vigia_store::StoreError) -> Problem {
    match e {
        vigia_store::StoreError::TooMany { .. } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e => {
            tracing::error!(error = %e, "Store read failed.");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, format!("the store did not answer ({e}); retry shortly"))
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    info(
        title = "Vigia API",
        description = "Telemetry for sensor fleets: readings on a NATS JetStream log, projected into SurrealDB.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "events", description = "Readings in through the log, and out"),
        (name = "aggregates", description = "Counts, averages, series, rate and mode from the projections"),
        (name = "sensors", description = "The sensor registry"),
        (name = "alerts", description = "Alerts raised by the rules"),
        (name = "datasets", description = "Arbitrary CSV files: uploaded to the object store, loaded into tables, queried"),
        (name = "operations", description = "Health, metrics and dead letters")
    )
)]
struct ApiDoc;

/// Declares the bearer scheme: with tokens configured, writes need `write`
/// and reads need `read` unless reads are open.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security =
            Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new()), SecurityRequirement::default()]);
    }
}

fn api_router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(metrics::metrics))
        .nest("/api/v1", v1_router())
}

fn v1_router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(ingest::post_events, events::list_events))
        .routes(routes!(events::get_event, changes::put_event, changes::patch_event, changes::delete_event))
        .routes(routes!(export::export))
        .routes(routes!(live::live))
        .routes(routes!(generate::simulate))
        .routes(routes!(generate::generate_n))
        .routes(routes!(counts::counts))
        .routes(routes!(stats::averages))
        .routes(routes!(stats::series))
        .routes(routes!(stats::rate))
        .routes(routes!(stats::mode))
        .routes(routes!(sensors::sensors))
        .routes(routes!(sensors::sensor_by_tag, sensors::put_sensor, sensors::delete_sensor))
        .routes(routes!(sensors::geojson))
        .routes(routes!(alerts::alerts))
        .routes(routes!(alerts::ack))
        .routes(routes!(rules::get_rules, rules::put_rules))
        .routes(routes!(dead::dead_letters))
        .routes(routes!(audit::get_audit))
        .routes(routes!(datasets::list))
        .routes(routes!(datasets::rows::query_dataset, datasets::delete))
        .routes(routes!(datasets::job))
        // Route layers run inside the app-wide limit and override it.
        .merge(OpenApiRouter::new().routes(routes!(import::import)).layer(DefaultBodyLimit::max(import::MAX_IMPORT)))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(datasets::upload::upload))
                .layer(DefaultBodyLimit::max(datasets::MAX_UPLOAD)),
        )
}

/// `/api/v1` behind the token check; `/health`, `/openapi.json`, `/docs` and the dashboard stay open.
fn guarded(state: &ApiState) -> OpenApiRouter<ApiState> {
    let v1 = v1_router().layer(axum::middleware::from_fn_with_state(state.clone(), auth::require));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(metrics::metrics))
        .nest("/api/v1", v1)
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_router().split_for_parts();
    api
}

/// The whole HTTP application.
pub fn router(state: ApiState) -> Router {
    let (router, mut api) = guarded(&state).split_for_parts();
    wire::for_roots(&mut api, &state.roots);
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", api))
        .merge(dashboard::routes())
        .layer(axum::middleware::map_response(problem::plain_rejections))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
