//! The Device Provisioning Service over HTTPS: the device registration API
//! (`/{scope}/registrations/{id}/…`, SAS in `Authorization`) and the enrollment service API
//! (`/enrollments`, `/enrollmentGroups`, `/registrations`, signed by
//! `provisioningserviceowner`). Collection names match case-insensitively where the official
//! SDKs spell them differently.

use super::AppState;
use super::paging::page;
use super::response::{ApiResult, JSON, authorize, if_match, parse_json};
use crate::client_cert::PeerChain;
use crate::clock::unix_now;
use crate::dps::{Dps, DpsError, EnrollmentGroup, IndividualEnrollment};
use crate::hub::registry::Rights;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Extension, Router};
use bytes::Bytes;
use iot_common::provisioning::{Attestation, RegistrationRequest, RegistrationStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

impl IntoResponse for DpsError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        answer(status, &self.body())
    }
}

fn answer<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut r = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

fn with_etag(mut r: Response, etag: Option<&str>) -> Response {
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

fn service_auth(s: &AppState, h: &HeaderMap) -> Result<(), DpsError> {
    authorize(&s.hub, h, Rights::PROVISIONING).map_err(|_| DpsError::unauthorized())
}

fn body<T: serde::de::DeserializeOwned>(b: &Bytes) -> Result<T, DpsError> {
    parse_json(b).map_err(|e| DpsError::bad_request(e.message))
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/{scope}/registrations/{rid}/register", put(register))
        .route(
            "/{scope}/registrations/{rid}/operations/{op}",
            axum::routing::get(operation),
        )
        .route("/enrollments/", post(bulk_enrollments))
        .merge(collection::<Individual>("/enrollments"))
        .merge(collection::<Groups>("/enrollmentGroups"))
        .merge(collection::<Groups>("/enrollmentgroups"))
        .route(
            "/registrations/{id}",
            axum::routing::get(get_registration).delete(delete_registration),
        )
        .route("/registrations/{id}/query", post(query_group_registrations))
}

// ---- the device registration API ----

/// A registration request's credential: the SAS token in `Authorization`, or without one the
/// client certificate chain of the HTTPS connection (X.509 attestation).
fn device_auth(
    s: &AppState,
    scope: &str,
    rid: &str,
    h: &HeaderMap,
    peer: Option<&PeerChain>,
) -> Result<crate::dps::Attestor, DpsError> {
    if scope != s.hub.dps.id_scope() {
        return Err(DpsError::not_found("ID scope"));
    }
    match h.get(header::AUTHORIZATION) {
        Some(v) => {
            let token = v.to_str().map_err(|_| DpsError::unauthorized())?;
            s.hub.dps.authorize_sas(rid, token, unix_now())
        }
        None => s
            .hub
            .dps
            .authorize_x509(rid, peer.map_or(&[][..], |p| &p[..]), unix_now()),
    }
}

async fn register(
    State(s): State<AppState>,
    Path((scope, rid)): Path<(String, String)>,
    peer: Option<Extension<PeerChain>>,
    h: HeaderMap,
    b: Bytes,
) -> Result<Response, DpsError> {
    let who = device_auth(&s, &scope, &rid, &h, peer.as_deref())?;
    let request: RegistrationRequest = body(&b)?;
    let op = s.hub.dps.register(&who, &request, s.hub.as_ref())?;
    s.hub.mark_dirty();
    if op.status != RegistrationStatus::Assigning {
        return Ok(answer(StatusCode::OK, &op));
    }
    let mut r = answer(StatusCode::ACCEPTED, &op);
    if let Ok(v) = HeaderValue::from_str(&s.hub.dps.retry_after().to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(r)
}

async fn operation(
    State(s): State<AppState>,
    Path((scope, rid, op)): Path<(String, String, String)>,
    peer: Option<Extension<PeerChain>>,
    h: HeaderMap,
) -> Result<Response, DpsError> {
    device_auth(&s, &scope, &rid, &h, peer.as_deref())?;
    Ok(answer(StatusCode::OK, &s.hub.dps.operation(&rid, &op)?))
}

// ---- the enrollment service API ----

/// The two enrollment collections, which the API serves alike.
trait Collection: Send + Sync + 'static {
    type Doc: Serialize + serde::de::DeserializeOwned + Send;
    const ITEM_TYPE: &'static str;
    fn put(
        dps: &Dps,
        id: &str,
        doc: Self::Doc,
        if_match: Option<&str>,
    ) -> Result<Self::Doc, DpsError>;
    fn get(dps: &Dps, id: &str) -> Result<Self::Doc, DpsError>;
    fn delete(dps: &Dps, id: &str, if_match: Option<&str>) -> Result<(), DpsError>;
    fn all(dps: &Dps) -> Vec<Self::Doc>;
    fn etag(doc: &Self::Doc) -> Option<&str>;
    fn attestation(doc: &Self::Doc) -> &Attestation;
}

/// `/enrollments`.
struct Individual;
/// `/enrollmentGroups` (and the lower-case spelling one official SDK uses).
struct Groups;

impl Collection for Individual {
    type Doc = IndividualEnrollment;
    const ITEM_TYPE: &'static str = "enrollment";
    fn put(
        dps: &Dps,
        id: &str,
        doc: Self::Doc,
        if_match: Option<&str>,
    ) -> Result<Self::Doc, DpsError> {
        dps.put_enrollment(id, doc, if_match)
    }
    fn get(dps: &Dps, id: &str) -> Result<Self::Doc, DpsError> {
        dps.enrollment(id)
    }
    fn delete(dps: &Dps, id: &str, if_match: Option<&str>) -> Result<(), DpsError> {
        dps.delete_enrollment(id, if_match)
    }
    fn all(dps: &Dps) -> Vec<Self::Doc> {
        dps.enrollments()
    }
    fn etag(doc: &Self::Doc) -> Option<&str> {
        doc.etag.as_deref()
    }
    fn attestation(doc: &Self::Doc) -> &Attestation {
        &doc.attestation
    }
}

impl Collection for Groups {
    type Doc = EnrollmentGroup;
    const ITEM_TYPE: &'static str = "enrollmentGroup";
    fn put(
        dps: &Dps,
        id: &str,
        doc: Self::Doc,
        if_match: Option<&str>,
    ) -> Result<Self::Doc, DpsError> {
        dps.put_group(id, doc, if_match)
    }
    fn get(dps: &Dps, id: &str) -> Result<Self::Doc, DpsError> {
        dps.group(id)
    }
    fn delete(dps: &Dps, id: &str, if_match: Option<&str>) -> Result<(), DpsError> {
        dps.delete_group(id, if_match)
    }
    fn all(dps: &Dps) -> Vec<Self::Doc> {
        dps.groups()
    }
    fn etag(doc: &Self::Doc) -> Option<&str> {
        doc.etag.as_deref()
    }
    fn attestation(doc: &Self::Doc) -> &Attestation {
        &doc.attestation
    }
}

/// The routes of one collection under `base`: the document, its attestation, the query.
fn collection<C: Collection>(base: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{base}/query"), post(query_docs::<C>))
        .route(
            &format!("{base}/{{id}}"),
            put(put_doc::<C>).get(get_doc::<C>).delete(delete_doc::<C>),
        )
        .route(
            &format!("{base}/{{id}}/attestationmechanism"),
            post(attestation_doc::<C>),
        )
}

async fn put_doc<C: Collection>(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
    b: Bytes,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    let doc = C::put(&s.hub.dps, &id, body(&b)?, if_match(&h))?;
    s.hub.mark_dirty();
    Ok(with_etag(answer(StatusCode::OK, &doc), C::etag(&doc)))
}

async fn get_doc<C: Collection>(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    let doc = C::get(&s.hub.dps, &id)?;
    Ok(with_etag(answer(StatusCode::OK, &doc), C::etag(&doc)))
}

async fn delete_doc<C: Collection>(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    C::delete(&s.hub.dps, &id, if_match(&h))?;
    s.hub.mark_dirty();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn attestation_doc<C: Collection>(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    let doc = C::get(&s.hub.dps, &id)?;
    Ok(answer(StatusCode::OK, C::attestation(&doc)))
}

async fn query_docs<C: Collection>(
    State(s): State<AppState>,
    h: HeaderMap,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    paged(&h, C::all(&s.hub.dps), C::ITEM_TYPE).map_err(|e| DpsError::bad_request(e.message))
}

fn paged<T: Serialize>(h: &HeaderMap, rows: Vec<T>, item_type: &'static str) -> ApiResult {
    let (rows, next) = page(h, rows)?;
    let mut r = answer(StatusCode::OK, &rows);
    let headers = r.headers_mut();
    headers.insert("x-ms-item-type", HeaderValue::from_static(item_type));
    if let Some(v) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert("x-ms-continuation", v);
    }
    Ok(r)
}

#[derive(Deserialize)]
struct BulkOperation {
    mode: String,
    enrollments: Vec<IndividualEnrollment>,
}

async fn bulk_enrollments(
    State(s): State<AppState>,
    h: HeaderMap,
    b: Bytes,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    let op: BulkOperation = body(&b)?;
    if op.enrollments.len() > 10 {
        return Err(DpsError::bad_request(
            "A bulk operation holds at most 10 enrollments.",
        ));
    }
    let mut errors = Vec::new();
    for e in op.enrollments {
        let id = e.registration_id.clone();
        let result = match op.mode.as_str() {
            "create" => match s.hub.dps.enrollment(&id) {
                Ok(_) => Err(DpsError::new(409, 409201, "The enrollment already exists.")),
                Err(_) => s.hub.dps.put_enrollment(&id, e, None).map(drop),
            },
            "update" => s.hub.dps.put_enrollment(&id, e, None).map(drop),
            "updateIfMatchETag" => {
                let etag = e.etag.clone();
                s.hub.dps.put_enrollment(&id, e, etag.as_deref()).map(drop)
            }
            "delete" => s.hub.dps.delete_enrollment(&id, e.etag.as_deref()),
            _ => return Err(DpsError::bad_request("Unknown bulk mode.")),
        };
        if let Err(err) = result {
            errors.push(
                json!({"registrationId": id, "errorCode": err.code, "errorStatus": err.message}),
            );
        }
    }
    s.hub.mark_dirty();
    Ok(answer(
        StatusCode::OK,
        &json!({"isSuccessful": errors.is_empty(), "errors": errors}),
    ))
}

async fn get_registration(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    let r = s.hub.dps.registration(&id)?;
    Ok(with_etag(answer(StatusCode::OK, &r), r.etag.as_deref()))
}

async fn delete_registration(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    s.hub.dps.delete_registration(&id, if_match(&h))?;
    s.hub.mark_dirty();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn query_group_registrations(
    State(s): State<AppState>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Result<Response, DpsError> {
    service_auth(&s, &h)?;
    let rows: Vec<Value> = s
        .hub
        .dps
        .group_registrations(&id)
        .into_iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    paged(&h, rows, "deviceRegistration").map_err(|e| DpsError::bad_request(e.message))
}
