//! API documentation served without any CDN: `/openapi.json`, Swagger UI at
//! `/docs` (vendored by utoipa-swagger-ui) and ReDoc at `/redoc` (the
//! standalone bundle from npm's `redoc@2.5.4`, embedded in the binary).

use actix_web::{web, HttpResponse};
use utoipa::openapi::path::Parameter;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

use crate::error::PROBLEM_CONTENT_TYPE;
use utoipa_swagger_ui::SwaggerUi;

const REDOC_JS: &[u8] = include_bytes!("../assets/redoc.standalone.js");

const REDOC_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hookline API reference</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="/openapi.json" hide-loading="false"></redoc>
<script src="/redoc/redoc.standalone.js"></script>
</body>
</html>"#;

/// Adds the security schemes every Hookline API uses, and documents the
/// error answers every operation can give (see [`add_common_responses`]).
pub fn add_security(mut spec: OpenApi) -> OpenApi {
    add_common_responses(&mut spec);
    let components = spec.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("sk_live_…")
                .description(Some(
                    "An organisation's API key, as `Authorization: Bearer sk_live_…` (or the `X-API-Key` header).",
                ))
                .build(),
        ),
    );
    components
        .add_security_scheme("api_key_header", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    components.add_security_scheme(
        "operator_token",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The operator token from HOOKLINE_OPERATOR_TOKEN."))
                .build(),
        ),
    );
    spec
}

fn problem_response(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
    RefOr::T(ResponseBuilder::new().description(description).content(PROBLEM_CONTENT_TYPE, content).build())
}

/// The problems any operation may answer besides those its own annotation
/// lists: 401 for a missing or bad credential, 403 for a missing scope, 429
/// past the rate limit; with a body, 400 (not JSON), 413 (too large) and 415
/// (not `application/json`); with parameters, 422 (an invalid one); with a
/// path parameter, 404. An operation's own description of a code wins.
pub fn add_common_responses(spec: &mut OpenApi) {
    for item in spec.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            let operator = op
                .security
                .as_ref()
                .is_some_and(|s| serde_json::to_string(s).unwrap_or_default().contains("operator_token"));
            let params = op.parameters.as_deref().unwrap_or_default();
            let json = |p: &RefOr<Parameter>| serde_json::to_value(p).unwrap_or_default();
            let has_path = params.iter().any(|p| json(p)["in"] == "path");
            let has_params = !params.is_empty();
            let has_body = op.request_body.is_some();
            let mut add = |code: &str, description: &str| {
                op.responses.responses.entry(code.to_owned()).or_insert_with(|| problem_response(description));
            };
            add("401", "Missing, malformed, unknown, expired or revoked credential");
            if !operator {
                add("403", "The key lacks the scope this operation needs, or may not be used from this address");
                add("429", "Rate limited; `Retry-After` says when to try again");
            }
            if has_body {
                add("400", "The body is not valid JSON");
                add("413", "The body is larger than the limit");
                add("415", "The body is not `application/json`");
            }
            if has_body || has_params {
                add("422", "An invalid field or parameter, named in `errors`");
            }
            if has_path {
                add("404", "No such resource in this organisation");
            }
        }
    }
}

/// Serves the document and both viewers.
pub fn configure(spec: OpenApi) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", spec))
            .route(
                "/docs",
                web::get()
                    .to(|| async { HttpResponse::PermanentRedirect().insert_header(("Location", "/docs/")).finish() }),
            )
            .route(
                "/redoc",
                web::get()
                    .to(|| async { HttpResponse::Ok().content_type("text/html; charset=utf-8").body(REDOC_HTML) }),
            )
            .route(
                "/redoc/redoc.standalone.js",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("application/javascript")
                        .insert_header(("Cache-Control", "public, max-age=86400"))
                        .body(REDOC_JS)
                }),
            );
    }
}
