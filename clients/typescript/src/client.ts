// A ctxgraph client: urql over HTTP for queries and mutations, graphql-ws
// (graphql-transport-ws) for subscriptions, typed by the generated documents
// in ./gql. Copy this file into an app, or import it.
import { Client, cacheExchange, fetchExchange, subscriptionExchange } from '@urql/core';
import type { Exchange } from '@urql/core';
import { persistedExchange } from '@urql/exchange-persisted';
import { createClient as createWsClient } from 'graphql-ws';
import type { Client as WsClient } from 'graphql-ws';
import WebSocket from 'ws';

/**
 * The members of the schema's unions and interfaces (MessagePart: TextPart, ToolCallPart,
 * ...), for caches that match fragments on them: Apollo Client's
 * `new InMemoryCache({ possibleTypes })`, urql graphcache's `possibleTypes`.
 */
export { default as introspection } from './gql/possible-types';

export interface CtxgraphClientOptions {
  /** The GraphQL endpoint, e.g. http://127.0.0.1:8000/graphql (ws:// is derived from it). */
  url: string;
  /**
   * How persisted queries are used:
   * - 'off': full query text in every request.
   * - 'automatic': Automatic Persisted Queries (hash first, text on PersistedQueryNotFound),
   *   queries as cacheable GET requests.
   * - 'trusted': send only the hash the code generator embedded in each document
   *   (document.__meta__.hash), for a server running with CTXGRAPH_TRUSTED_DOCUMENTS.
   */
  persisted?: 'off' | 'automatic' | 'trusted';
  /** Headers for every request and the WebSocket's connection_init (e.g. Authorization). */
  headers?: Record<string, string>;
  /** A fetch to use instead of the global one (tests record requests with it). */
  fetch?: typeof fetch;
}

export interface CtxgraphClient {
  client: Client;
  ws: WsClient;
  /** Close the WebSocket (Node keeps the process alive while it is open). */
  close(): Promise<void>;
}

/** The hash GraphQL Code Generator stored in a document (client preset, persistedDocuments). */
function embeddedHash(document: unknown): string | undefined {
  const meta = (document as { __meta__?: { hash?: unknown } }).__meta__;
  return typeof meta?.hash === 'string' ? meta.hash : undefined;
}

export function createCtxgraphClient(options: CtxgraphClientOptions): CtxgraphClient {
  const { url, persisted = 'off', headers = {} } = options;
  const ws = createWsClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: headers,
    lazy: true,
    retryAttempts: 3,
  });
  const persistence: Exchange[] =
    persisted === 'automatic'
      ? [persistedExchange({ preferGetForPersistedQueries: 'within-url-limit' })]
      : persisted === 'trusted'
        ? [
            persistedExchange({
              enforcePersistedQueries: true,
              enableForMutation: true,
              enableForSubscriptions: true,
              generateHash: async (_query, document) => embeddedHash(document),
            }),
          ]
        : [];
  const client = new Client({
    url,
    requestPolicy: 'network-only',
    fetch: options.fetch,
    fetchOptions: { headers },
    exchanges: [
      cacheExchange,
      ...persistence,
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (request) => ({
          subscribe: (sink) => ({
            // A hash-only request has no query text; the server fills it in.
            unsubscribe: ws.subscribe({ ...request, query: request.query ?? '' }, sink),
          }),
        }),
      }),
    ],
  });
  return { client, ws, close: () => ws.dispose() as Promise<void> };
}
