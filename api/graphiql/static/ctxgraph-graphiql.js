// ctxgraph's GraphiQL setup (ctxgraph's own code; GraphiQL, React and
// graphql-ws are loaded before this file, from this server or a CDN).
//
// One fetcher for everything: queries and mutations over HTTP POST to this
// page's URL, subscriptions over graphql-transport-ws on the same URL with
// ws(s)://. The Headers tab is the Authorization field: its headers go with
// every HTTP request and, for subscriptions, in the connection_init payload
// (e.g. {"Authorization": "Bearer ..."}), since browsers cannot set headers
// on a WebSocket.
(function () {
  "use strict";

  var container = document.getElementById("graphiql");

  // GraphiQL's dialogs insert <style> elements (react-remove-scroll) tagged
  // with this global; the page's CSP admits styles with this nonce only.
  window.__webpack_nonce__ = document.body.dataset.styleNonce;
  var httpUrl = location.origin + location.pathname;
  var wsUrl = httpUrl.replace(/^http/, "ws");

  var DEFAULT_QUERY = [
    "# ctxgraph: run with Ctrl-Enter or the \u25b6 button.",
    "#",
    "# Authorization: fill in the Headers tab below:",
    '#   {"Authorization": "Bearer <key>"}',
    "# It goes with every request, and in connection_init",
    "# for subscriptions (WebSocket).",
    "# Docs: the book icon, top left.",
    "",
    "query RecentContexts {",
    "  contexts(first: 10) {",
    "    totalCount",
    "    nodes {",
    "      id",
    "      name",
    "      latestVersion",
    "      updatedAt",
    "    }",
    "  }",
    "}",
    "",
  ].join("\n");

  var DEFAULT_HEADERS = '{\n  "Authorization": ""\n}';

  // Blank values are dropped so the untouched template sends no header.
  function headersOf(opts) {
    var given = (opts && opts.headers) || {};
    var headers = {};
    Object.keys(given).forEach(function (name) {
      var value = given[name];
      if (value !== undefined && value !== null && String(value) !== "") {
        headers[name] = String(value);
      }
    });
    return headers;
  }

  // One WebSocket client per set of headers: connection_init is sent once
  // per connection, so new headers need a new connection.
  var current = null;

  function fetcherFor(headers) {
    var key = JSON.stringify(headers);
    if (current && current.key === key) {
      return current.fetcher;
    }
    if (current) {
      current.wsClient.dispose();
    }
    var wsClient = graphqlWs.createClient({
      url: wsUrl,
      lazy: true,
      connectionParams: headers,
    });
    var fetcher = GraphiQL.createFetcher({
      url: httpUrl,
      subscriptionUrl: wsUrl,
      wsClient: wsClient,
    });
    current = { key: key, fetcher: fetcher, wsClient: wsClient };
    return fetcher;
  }

  function fetcher(params, opts) {
    var headers = headersOf(opts);
    return fetcherFor(headers)(params, Object.assign({}, opts, { headers: headers }));
  }

  var root = ReactDOM.createRoot(container);
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: DEFAULT_QUERY,
      defaultHeaders: DEFAULT_HEADERS,
      isHeadersEditorEnabled: true,
      // Secrets typed into the Headers tab stay out of localStorage.
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: "headers",
      inputValueDeprecation: true,
    })
  );
})();
