"""Self-hosted GraphiQL explorer for air-gapped hospital networks.

`page` renders the explorer's HTML and holds `GRAPHIQL_CSP`, the Content-Security-Policy
the server sends with it; `static/` holds the vendored, minified GraphiQL and React
browser builds with their licences plus the first-party bootstrap (`graphiql-init.js`,
`graphiql-page.css`, `favicon.svg`). Nothing is loaded from any other host: see NOTICE.md
for what is vendored and how to update it.
"""

from app.graphiql.page import GRAPHIQL_CSP, PAGE_ASSETS, STATIC_DIR, render_graphiql_page

__all__ = ["GRAPHIQL_CSP", "PAGE_ASSETS", "STATIC_DIR", "render_graphiql_page"]
