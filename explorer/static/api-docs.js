// The API's documentation page (/api/docs): Swagger UI, served by `profiles serve` itself, on
// the OpenAPI document. A file of its own: the page's policy runs no inline script.
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
});
