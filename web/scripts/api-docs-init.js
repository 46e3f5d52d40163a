// Starts Swagger UI on the gateway's combined OpenAPI document (served as a file: the
// Content-Security-Policy allows no inline scripts).
window.addEventListener("load", () => {
  window.ui = window.SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
