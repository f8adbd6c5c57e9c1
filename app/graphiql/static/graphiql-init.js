/*
 * PatientGraph GraphiQL bootstrap (first-party, not vendored).
 *
 * Reads its configuration from <script type="application/json" id="graphiql-config">
 * (written by app/graphiql/page.py) so that the page needs no inline script and the
 * Content-Security-Policy can keep script-src 'self'. Loads nothing from any other host.
 */
(function () {
  "use strict";
  var configElement = document.getElementById("graphiql-config");
  var mountPoint = document.getElementById("graphiql");
  if (!configElement || !mountPoint) {
    throw new Error("graphiql-init.js: #graphiql-config or #graphiql missing from the page");
  }
  var config = JSON.parse(configElement.textContent || "{}");
  var fetcher = GraphiQL.createFetcher({ url: config.endpoint });
  var props = {
    fetcher: fetcher,
    defaultQuery: config.defaultQuery,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false
  };
  if (typeof config.defaultHeaders === "string") {
    var defaultHeaders = JSON.parse(config.defaultHeaders);
    props.defaultHeaders = config.defaultHeaders;
    props.defaultEditorToolsVisibility = "headers";
    // GraphiQL 4 sends its first schema introspection before the headers editor exists,
    // i.e. without any headers, so an endpoint that requires auth would refuse it. Give
    // introspection requests that carry no headers the page's default headers; queries
    // the user runs always use exactly what the headers editor holds.
    props.fetcher = function (params, options) {
      if (params && params.operationName === "IntrospectionQuery" && !(options && options.headers)) {
        options = Object.assign({}, options, { headers: defaultHeaders });
      }
      return fetcher(params, options);
    };
  }
  ReactDOM.createRoot(mountPoint).render(React.createElement(GraphiQL, props));
})();
