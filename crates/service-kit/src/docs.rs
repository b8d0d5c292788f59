//! API documentation served without any CDN: `/openapi.json`, Swagger UI at
//! `/docs` (vendored by utoipa-swagger-ui) and ReDoc at `/redoc` (the
//! standalone bundle from npm's `redoc@2.5.4`, embedded in the binary).

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
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

/// Adds the security schemes every Hookline API uses.
pub fn add_security(mut spec: OpenApi) -> OpenApi {
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
