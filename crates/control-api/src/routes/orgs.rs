//! `POST /api/v1/orgs`: the operator creates an organisation and its first admin key.

use actix_web::{web, HttpRequest, HttpResponse};
use diesel_async::AsyncConnection;
use hookline_domain::api_key::KeyPepper;
use hookline_domain::id::OrgId;
use hookline_domain::scope::Role;
use hookline_service_kit::error::ApiError;
use hookline_service_kit::kit::Kit;
use hookline_store::db::PgPool;
use serde::Deserialize;

use crate::audit::Actor;
use crate::routes::keys::{insert_key, NewKeySpec};
use crate::views::OrgCreated;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/orgs", web::post().to(create_org));
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// 1 to 200 characters.
    #[schema(example = "Acme Leads Ltd")]
    pub name: String,
}

/// Checks `Authorization: Bearer <HOOKLINE_OPERATOR_TOKEN>` in constant time.
pub fn require_operator(kit: &Kit, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(expected) = kit.settings.operator_token.as_ref() else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "operator_disabled",
            "Operator routes are disabled",
        )
        .detail("set HOOKLINE_OPERATOR_TOKEN to enable operator routes"));
    };
    let presented = hookline_service_kit::auth::presented_key(req).unwrap_or_default();
    if hookline_domain::crypto::constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("this route needs the operator token"))
    }
}

/// Creates an organisation and its first admin key in one transaction.
pub async fn create(
    pool: &PgPool,
    pepper: &KeyPepper,
    default_limit: i32,
    name: &str,
    actor_ip: Option<std::net::IpAddr>,
) -> Result<OrgCreated, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid_field("name", "must be 1 to 200 characters"));
    }
    let pepper = pepper.clone();
    let mut conn = pool.get().await.map_err(ApiError::from_pool)?;
    let name = name.to_owned();
    let result = conn
        .transaction::<_, ApiError, _>(async |c| {
            let org = hookline_store::orgs::insert(c, OrgId::new().as_uuid(), &name).await?;
            let org_id = OrgId::from_uuid(org.id);
            let spec = NewKeySpec {
                name: "Admin key".into(),
                description: Some("Created with the organisation".into()),
                role: Role::Admin,
                scopes: Role::Admin.scopes(),
                rate_limit_per_hour: default_limit,
                allowed_ips: Vec::new(),
                expires_at: None,
            };
            let key = insert_key(c, &pepper, org_id, None, spec).await?;
            crate::audit::record(
                c,
                org_id,
                Actor::Operator(actor_ip),
                "org.created",
                "org",
                &org_id.to_string(),
                serde_json::json!({"name": name}),
            )
            .await?;
            crate::audit::record(
                c,
                org_id,
                Actor::Operator(actor_ip),
                "key.created",
                "key",
                &key.id.to_string(),
                serde_json::json!({"role": "admin"}),
            )
            .await?;
            Ok(OrgCreated { id: org_id, name: org.name, created_at: org.created_at, api_key: key })
        })
        .await?;
    Ok(result)
}

/// Create an organisation (operator only)
///
/// Answers with the organisation's first admin API key, including the full
/// key, which is shown this once.
#[utoipa::path(
    post, path = "/api/v1/orgs", tag = "Organisations",
    request_body = CreateOrg,
    security(("operator_token" = [])),
    responses(
        (status = 201, description = "Created", body = OrgCreated),
        (status = 401, description = "Not the operator token", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Operator routes are disabled (HOOKLINE_OPERATOR_TOKEN unset)", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = hookline_service_kit::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_org(
    kit: web::Data<Kit>,
    req: HttpRequest,
    body: web::Json<CreateOrg>,
) -> Result<HttpResponse, ApiError> {
    require_operator(&kit, &req)?;
    let ip = hookline_service_kit::auth::client_ip(&req, kit.settings.trust_forwarded_for);
    let created =
        create(&kit.pool, kit.auth.pepper(), kit.settings.default_rate_limit_per_hour as i32, &body.name, ip).await?;
    Ok(HttpResponse::Created().json(created))
}
