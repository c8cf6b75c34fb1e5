//! The admin API: modules, runs and their logs. Every route needs the admin key.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, extract::DefaultBodyLimit};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, parse_json, read_body, read_json};
use crate::executor::{Selection, UpgradeResult};
use crate::ids::{ModuleName, RunId};
use crate::store::RunQuery;
use crate::store::records::{EventRecord, RunStatus};

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/modules", get(list_modules))
        .route("/v1/modules/{name}", get(get_module).put(put_module))
        .route("/v1/modules/{name}/runs", post(start_run))
        .route("/v1/modules/{name}/upgrade", post(upgrade))
        .route("/v1/modules/{name}/triggers/{trigger}/sample", get(get_sample).post(listen_for_sample))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/events", get(get_events))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route("/v1/runs/{id}/requests", get(get_requests))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{name}", axum::routing::delete(revoke_key))
        .route("/v1/secrets", get(list_secrets))
        .route("/v1/secrets/{name}", axum::routing::put(put_secret).delete(delete_secret))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state, require_admin_key))
}

async fn require_admin_key(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::callers::bearer_token);
    match presented {
        Some(key) if crate::auth::key_matches(key, &app.admin_key_sha256) => next.run(request).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "bad-admin-key", "the admin key is wrong").into_response(),
        None => {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing-admin-key", "send `Authorization: Bearer <admin key>`")
                .into_response()
        }
    }
}

#[utoipa::path(put, path = "/v1/modules/{name}", params(("name" = String, Path, description = "The module's name")),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "A WebAssembly component"),
    responses(
        (status = 201, description = "A new version: `{name, created, version}`", body = Value),
        (status = 200, description = "That version was there already", body = Value),
        (status = 400, description = "`bad-module-name`, `not-wasm`, `not-a-component`, `invalid-component`, `world-mismatch`, `describe-failed`, `bad-trigger`", body = super::answers::ErrorBody),
        super::answers::ReadsBody, super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn put_module(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(body, app.limits.module()).await?;
    let (version, created) = app.executor.upload(&name, &bytes).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "name": name, "created": created, "version": version }))).into_response())
}

/// Every module by name, with its newest version and what that version's `describe()` said.
#[utoipa::path(get, path = "/v1/modules",
    responses((status = 200, description = "`{modules: [{name, versions, latest}]}`", body = Value), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn list_modules(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let modules: Vec<Value> = app
        .executor
        .modules()
        .await?
        .into_iter()
        .map(|module| {
            let latest = module.latest().cloned();
            json!({ "name": module.name, "versions": module.versions.len(), "latest": latest })
        })
        .collect();
    Ok(Json(json!({ "modules": modules })))
}

#[utoipa::path(get, path = "/v1/modules/{name}", params(("name" = String, Path, description = "The module's name")),
    responses((status = 200, description = "The module, its versions and what each `describe()` said", body = Value),
        (status = 400, description = "`bad-module-name`", body = super::answers::ErrorBody), (status = 404, description = "`unknown-module`", body = super::answers::ErrorBody), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn get_module(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(app.executor.module(&name).await?)))
}

#[utoipa::path(post, path = "/v1/modules/{name}/runs", params(("name" = String, Path, description = "The module's name")),
    request_body(content = Value, description = "The run's input (an empty body is `null`)"),
    responses((status = 201, description = "`{id, status, module, version}`", body = Value), (status = 404, description = "`unknown-module`", body = super::answers::ErrorBody),
        (status = 422, description = "`schema-mismatch`: the input fails the module's input schema", body = super::answers::ErrorBody),
        (status = 429, description = "`overloaded`: too many runs queued (`Retry-After`)", body = super::answers::ErrorBody),
        super::answers::ReadsBody, super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn start_run(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // The target first: a body for an unknown module is not read.
    let module = app.executor.module(&name).await.map_err(|e| ApiError::from(e).before_body())?;
    let input = parse_json(&read_body(body, app.limits.body()).await?)?;
    let run = app.executor.start_run(&module, input).await?;
    let view = json!({ "id": run.id, "status": run.status, "module": run.module, "version": run.version });
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpgradeRequest {
    /// The version to move to: one of the module's (its id, or a start of it of at least 8
    /// characters that no other version of the module shares).
    to: String,
    /// Run ids, or `"all-waiting"`.
    #[schema(value_type = Object)]
    runs: Value,
    /// Only check: replay each run's log on the new code, move nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Moves waiting runs to another version of their module, each only if its log replays on
/// the new code (`dry_run`: only checks). Answers a stream of JSON lines, one a run as it
/// is done (`{run, from, result, divergence?, reason?}`), then `{summary}`.
#[utoipa::path(post, path = "/v1/modules/{name}/upgrade", params(("name" = String, Path, description = "The module's name")),
    request_body(content = UpgradeRequest, description = "`{to, runs: [ids] | \"all-waiting\", dry_run?}`"),
    responses((status = 200, description = "`application/x-ndjson`: a line a run (`result`: compatible, diverges, upgraded or skipped; `divergence`: `{seq, recorded, asked}`), then `{summary: {compatible, diverges, upgraded, skipped}}`", body = String, content_type = "application/x-ndjson"),
        (status = 400, description = "`bad-upgrade-request`, `version-of-another-module`", body = super::answers::ErrorBody),
        (status = 404, description = "`unknown-module`, `unknown-version`", body = super::answers::ErrorBody),
        super::answers::ReadsBody, super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn upgrade(State(app): State<Arc<AppState>>, Path(name): Path<String>, body: Body) -> Result<Response, ApiError> {
    app.executor.module(&name).await.map_err(|e| ApiError::from(e).before_body())?;
    let request: UpgradeRequest =
        read_json(body, app.limits.body(), "bad-upgrade-request", "{to, runs: [ids] | \"all-waiting\", dry_run?}")
            .await?;
    let selection = match &request.runs {
        Value::String(all) if all == "all-waiting" => Selection::AllWaiting,
        Value::Array(ids) if ids.iter().all(Value::is_string) => {
            Selection::Runs(ids.iter().filter_map(Value::as_str).map(String::from).collect())
        }
        _ => {
            return Err(ApiError::bad_request("bad-upgrade-request", "`runs` is a list of run ids or \"all-waiting\""));
        }
    };
    let (module, to, runs) = app.executor.upgrade_plan(&name, &request.to, selection).await?;
    let (executor, dry_run) = (app.executor.clone(), request.dry_run);
    let lines =
        futures::stream::unfold((runs.into_iter(), Summary::default(), false), move |(mut runs, mut summary, done)| {
            let (executor, module, to) = (executor.clone(), module.clone(), to.clone());
            async move {
                if done {
                    return None;
                }
                let line = match runs.next() {
                    Some(id) => {
                        // On a task of its own: a caller that hangs up does not cut a move
                        // short (it holds the run's driver slot until it is done).
                        let upgrading =
                            tokio::spawn(async move { executor.upgrade_run(&module, &to, &id, dry_run).await });
                        match upgrading.await {
                            Ok(upgraded) => {
                                summary.count(upgraded.result);
                                json!(upgraded)
                            }
                            Err(e) => json!({ "error": format!("the upgrade of a run failed: {e}") }),
                        }
                    }
                    None => json!({ "summary": summary }),
                };
                let done = line.get("summary").is_some();
                Some((Ok::<_, Infallible>(format!("{line}\n")), (runs, summary, done)))
            }
        });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response())
}

/// How many runs ended each way.
#[derive(Default, serde::Serialize)]
struct Summary {
    compatible: usize,
    diverges: usize,
    upgraded: usize,
    skipped: usize,
}

impl Summary {
    fn count(&mut self, result: UpgradeResult) {
        *match result {
            UpgradeResult::Compatible => &mut self.compatible,
            UpgradeResult::Diverges => &mut self.diverges,
            UpgradeResult::Upgraded => &mut self.upgraded,
            UpgradeResult::Skipped => &mut self.skipped,
        } += 1;
    }
}

/// Runs a page lists unless asked for fewer, and the most it lists.
const RUNS_PER_PAGE: usize = 100;
const MOST_RUNS_PER_PAGE: usize = 1_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RunFilter {
    /// running, waiting, completed, failed or cancelled.
    #[param(value_type = Option<String>)]
    status: Option<RunStatus>,
    module: Option<String>,
    /// Only runs created at or after this time (ms since the Unix epoch).
    since_ms: Option<u64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 1,000; 100 unless given.
    limit: Option<usize>,
}

impl RunFilter {
    fn query(self) -> Result<RunQuery, ApiError> {
        let bad = |code, message: String| ApiError::new(StatusCode::BAD_REQUEST, code, message);
        let module = self.module.map(|m| ModuleName::parse(&m).map_err(|e| bad("bad-module-name", e.to_string())));
        let before =
            self.cursor.map(|c| RunId::parse(&c).map_err(|_| bad("bad-cursor", format!("`{c}` is no cursor"))));
        let limit = self.limit.unwrap_or(RUNS_PER_PAGE);
        if !(1..=MOST_RUNS_PER_PAGE).contains(&limit) {
            return Err(bad("bad-limit", format!("limit is 1 to {MOST_RUNS_PER_PAGE}")));
        }
        Ok(RunQuery {
            status: self.status,
            module: module.transpose()?,
            since_ms: self.since_ms,
            before: before.transpose()?,
            limit,
        })
    }
}

/// Runs, newest first, a page at a time (`next_cursor` asks for the next); a record that
/// cannot be read is listed under `unreadable` instead.
#[utoipa::path(get, path = "/v1/runs", params(RunFilter),
    responses((status = 200, description = "`{runs, next_cursor?, unreadable?}`, newest first", body = Value),
        (status = 400, description = "`bad-limit`, `bad-cursor`, `bad-module-name`, or a bad status", body = super::answers::ErrorBody),
        super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn list_runs(State(app): State<Arc<AppState>>, Query(filter): Query<RunFilter>) -> Result<Json<Value>, ApiError> {
    let page = app.executor.run_page(&filter.query()?).await?;
    let unreadable: Vec<Value> =
        page.unreadable.into_iter().map(|u| json!({ "id": u.key, "error": u.error })).collect();
    let mut view = json!({ "runs": page.runs });
    if let Some(next) = page.next {
        view["next_cursor"] = json!(next.to_string());
    }
    if !unreadable.is_empty() {
        view["unreadable"] = json!(unreadable);
    }
    Ok(Json(view))
}

/// A run with the URLs of its webhooks, and of those it waits on.
#[utoipa::path(get, path = "/v1/runs/{id}", params(("id" = String, Path, description = "The run's id")),
    responses((status = 200, description = "The run, with its webhooks' URLs and what it waits on", body = Value),
        (status = 404, description = "`unknown-run`", body = super::answers::ErrorBody), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn get_run(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(app.executor.run_view(&id).await?)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// Stream the log as Server-Sent Events, new events as they come, until the run ends.
    #[serde(default)]
    follow: bool,
}

/// A run's log; a record that cannot be read is listed under `unreadable` instead. With
/// `follow=true`, a stream of Server-Sent Events (see `follow_events`).
#[utoipa::path(get, path = "/v1/runs/{id}/events", params(("id" = String, Path, description = "The run's id"), EventsQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "With `follow`: resume after this event")),
    responses((status = 200, description = "`{events, unreadable?}`; with `follow=true`, `text/event-stream`: one event per log event (id = its sequence number, type = its type) until the run ends", content((Value = "application/json"), (String = "text/event-stream"))),
        (status = 404, description = "`unknown-run`", body = super::answers::ErrorBody), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn get_events(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if query.follow {
        let after = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
        app.executor.run(&id).await?;
        return Ok(follow_events(app, id, after).into_response());
    }
    let (events, unreadable) = app.executor.events(&id).await?;
    let mut view = json!({ "events": events });
    if !unreadable.is_empty() {
        view["unreadable"] =
            json!(unreadable.into_iter().map(|u| json!({ "seq": u.key, "error": u.error })).collect::<Vec<_>>());
    }
    Ok(Json(view).into_response())
}

/// How often a followed log is read again for new events.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// A run's events after `after` (a `Last-Event-ID`, to resume), each as an SSE event whose
/// id is its sequence number and whose type is the event's; it ends with the run's end.
fn follow_events(
    app: Arc<AppState>,
    id: String,
    after: Option<u64>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let pages = futures::stream::unfold((app, id, after, false), |(app, id, after, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let Ok((events, _)) = app.executor.events(&id).await else { return None };
            let new: Vec<EventRecord> = events.into_iter().filter(|e| after.is_none_or(|seen| e.seq > seen)).collect();
            let Some(last) = new.last() else {
                tokio::time::sleep(FOLLOW_EVERY).await;
                continue;
            };
            let (after, ended) = (Some(last.seq), new.iter().any(|e| e.event.is_terminal()));
            let sse: Vec<Result<Event, Infallible>> = new.iter().map(|e| Ok(sse_event(e))).collect();
            return Some((futures::stream::iter(sse), (app, id, after, ended)));
        }
    });
    Sse::new(pages.flatten()).keep_alive(KeepAlive::default())
}

fn sse_event(record: &EventRecord) -> Event {
    let data = serde_json::to_value(record).unwrap_or(Value::Null);
    let kind = data["type"].as_str().unwrap_or("event").to_string();
    Event::default().id(record.seq.to_string()).event(kind).data(data.to_string())
}

/// Ends a run as cancelled: its webhooks answer 410 and its timers are dropped. 200 with
/// the ended run, or 202 if its driver has not stopped yet (it will).
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", params(("id" = String, Path, description = "The run's id")),
    responses((status = 200, description = "`{id, status}`: the run ended as cancelled", body = Value),
        (status = 202, description = "`{id, status}`: it ends as soon as its driver stops", body = Value),
        (status = 404, description = "`unknown-run`", body = super::answers::ErrorBody), (status = 409, description = "`run-ended`: it had ended already", body = super::answers::ErrorBody),
        super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn cancel_run(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let run = app.executor.cancel(&id).await?;
    let status = if run.status.is_terminal() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(json!({ "id": run.id, "status": run.status }))).into_response())
}

#[derive(Deserialize)]
struct NewKey {
    name: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Makes an API key; the key is in this answer only (just its sha256 is stored).
#[utoipa::path(post, path = "/v1/keys",
    request_body(content = Value, description = "`{name, roles?}`"),
    responses((status = 201, description = "`{name, roles, key}`: the key is in this answer only", body = Value),
        (status = 409, description = "`name-taken`", body = super::answers::ErrorBody),
        super::answers::ReadsBody, super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn create_key(State(app): State<Arc<AppState>>, body: Body) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: NewKey = read_json(body, app.limits.body(), "bad-key-request", "{name, roles}").await?;
    let (record, key) = app.executor.create_api_key(&request.name, request.roles).await?;
    Ok((StatusCode::CREATED, Json(json!({ "name": record.name, "roles": record.roles, "key": key }))))
}

#[utoipa::path(get, path = "/v1/keys",
    responses((status = 200, description = "`{keys: [{name, roles, created_at_ms}]}`", body = Value), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn list_keys(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let keys: Vec<Value> = app
        .executor
        .api_keys()
        .await?
        .into_iter()
        .map(|k| json!({ "name": k.name, "roles": k.roles, "created_at_ms": k.created_at_ms }))
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

#[utoipa::path(delete, path = "/v1/keys/{name}", params(("name" = String, Path, description = "The key's name")),
    responses((status = 200, description = "`{name, revoked: true}`", body = Value), (status = 404, description = "`unknown-key`", body = super::answers::ErrorBody), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn revoke_key(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    app.executor.revoke_api_key(&name).await?;
    Ok(Json(json!({ "name": name, "revoked": true })))
}

#[derive(Deserialize)]
struct SecretValue {
    value: String,
}

/// Stores a signing secret by name (`{"value": "..."}`); it is never shown again.
#[utoipa::path(put, path = "/v1/secrets/{name}", params(("name" = String, Path, description = "The secret's name")),
    request_body(content = Value, description = "`{value}`: never shown again"),
    responses((status = 201, description = "`{name, created: true}`", body = Value),
        (status = 200, description = "`{name, created: false}`: replaced", body = Value),
        super::answers::ReadsBody, super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn put_secret(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    crate::ids::KeyName::parse(&name).map_err(crate::executor::ExecError::from)?;
    let secret: SecretValue = read_json(body, app.limits.body(), "bad-secret-request", "{value}").await?;
    if secret.value.is_empty() {
        return Err(ApiError::bad_request("bad-secret-request", "the secret's value is empty"));
    }
    let created = app.executor.put_secret(&name, &secret.value).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(json!({ "name": name, "created": created }))))
}

#[utoipa::path(get, path = "/v1/secrets",
    responses((status = 200, description = "`{secrets: [name]}`: names only", body = Value), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn list_secrets(State(app): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "secrets": app.executor.secret_names().await? })))
}

#[utoipa::path(delete, path = "/v1/secrets/{name}", params(("name" = String, Path, description = "The secret's name")),
    responses((status = 200, description = "`{name, deleted: true}`", body = Value), (status = 404, description = "`unknown-secret`", body = super::answers::ErrorBody), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn delete_secret(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    app.executor.delete_secret(&name).await?;
    Ok(Json(json!({ "name": name, "deleted": true })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RequestFilter {
    /// Only the calls to this webhook.
    webhook: Option<String>,
}

/// What arrived for a run (see `Executor::requests`). Headers were redacted of
/// credentials when the calls arrived.
#[utoipa::path(get, path = "/v1/runs/{id}/requests", params(("id" = String, Path, description = "The run's id"), RequestFilter),
    responses((status = 200, description = "`{requests}`: every call that arrived for the run, with its state", body = Value),
        (status = 404, description = "`unknown-run`", body = super::answers::ErrorBody), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn get_requests(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(filter): Query<RequestFilter>,
) -> Result<Json<Value>, ApiError> {
    let requests = app.executor.requests(&id, filter.webhook.as_deref()).await?;
    Ok(Json(json!({ "requests": requests })))
}

/// Arms a start trigger to capture its next call as a sample event (it starts no run).
#[utoipa::path(post, path = "/v1/modules/{name}/triggers/{trigger}/sample", params(("name" = String, Path, description = "The module's name"), ("trigger" = String, Path, description = "The start trigger's name")),
    responses((status = 202, description = "`{listening: true}`", body = Value), (status = 404, description = "`unknown-module`, `unknown-trigger`", body = super::answers::ErrorBody), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn listen_for_sample(
    State(app): State<Arc<AppState>>,
    Path((name, trigger)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    app.executor.listen_for_sample(&name, &trigger).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "listening": true }))))
}

/// The captured sample event and the JSON Schema learnt from it.
#[utoipa::path(get, path = "/v1/modules/{name}/triggers/{trigger}/sample", params(("name" = String, Path, description = "The module's name"), ("trigger" = String, Path, description = "The start trigger's name")),
    responses((status = 200, description = "The captured event and the JSON Schema learnt from it", body = Value),
        (status = 404, description = "`no-sample`, `unknown-module`, `unknown-trigger`", body = super::answers::ErrorBody), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn get_sample(
    State(app): State<Arc<AppState>>,
    Path((name, trigger)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let sample = app.executor.sample(&name, &trigger).await?;
    sample
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no-sample", format!("no sample was captured for `{name}`/`{trigger}`")))
}

/// What the engine counts, in Prometheus' text format.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus' text format", body = String, content_type = "application/openmetrics-text"), super::answers::AdminRoute),
    security(("admin_key" = [])))]
async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], app.executor.metrics().encode()).into_response()
}
