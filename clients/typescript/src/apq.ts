// Automatic persisted queries as Apollo Client and urql really do them,
// against a live ctxgraph server. Every HTTP exchange the two clients make is
// recorded (through their `fetch` option) and printed as one JSON object, so a
// test can assert what went over the wire: a hash-only request answered
// PersistedQueryNotFound, the retry with the full text, then hash-only
// requests (GET for queries) that succeed.
//
//   npx tsx src/apq.ts --url http://127.0.0.1:8000/graphql --run <tag>
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { Client, fetchExchange } from '@urql/core';
import { persistedExchange } from '@urql/exchange-persisted';
import { ChatHistoryDocument, ContextsDocument, CreateContextDocument } from './gql/graphql';
import introspection from './gql/possible-types';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8000/graphql' },
    run: { type: 'string', default: 'apq' },
  },
});
const url = args.url;
const run = args.run;

interface Exchange {
  method: string;
  /** Whether the request carried the query text (URL parameter or body field). */
  sentQuery: boolean;
  sha256Hash: string | null;
  status: number;
  body: unknown;
}

function recordingFetch(log: Exchange[]): typeof fetch {
  return async (input, init) => {
    const request = new Request(input, init);
    const target = new URL(request.url);
    let sentQuery = target.searchParams.has('query');
    let extensions: unknown = target.searchParams.get('extensions');
    if (typeof extensions === 'string') extensions = JSON.parse(extensions);
    if (request.method === 'POST') {
      const payload = JSON.parse(await request.clone().text()) as { query?: string; extensions?: unknown };
      sentQuery = typeof payload.query === 'string' && payload.query !== '';
      extensions = payload.extensions;
    }
    const response = await fetch(request);
    const persisted = (extensions as { persistedQuery?: { sha256Hash?: string } } | null)?.persistedQuery;
    log.push({
      method: request.method,
      sentQuery,
      sha256Hash: persisted?.sha256Hash ?? null,
      status: response.status,
      body: await response.clone().json(),
    });
    return response;
  };
}

function apollo(log: Exchange[]): ApolloClient {
  const persisted = new PersistedQueryLink({
    sha256: (text: string) => createHash('sha256').update(text).digest('hex'),
    useGETForHashedQueries: true,
  });
  return new ApolloClient({
    link: ApolloLink.from([persisted, new HttpLink({ uri: url, fetch: recordingFetch(log) })]),
    // the MessagePart union's members, so fragments on it match (generated)
    cache: new InMemoryCache({ possibleTypes: introspection.possibleTypes }),
  });
}

function urql(log: Exchange[]): Client {
  return new Client({
    url,
    requestPolicy: 'network-only',
    fetch: recordingFetch(log),
    exchanges: [persistedExchange({ preferGetForPersistedQueries: 'within-url-limit' }), fetchExchange],
  });
}

const steps: Record<string, { exchanges: Exchange[]; data: unknown; error: string | null }> = {};

async function step(name: string, body: (log: Exchange[]) => Promise<unknown>): Promise<unknown> {
  const exchanges: Exchange[] = [];
  let data: unknown = null;
  let error: string | null = null;
  try {
    data = await body(exchanges);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  steps[name] = { exchanges, data, error };
  return data;
}

const listVariables = { first: 5, filter: { metadataContains: { run } } };

// Apollo: a mutation (POST, hash first), then a query (GET, hash first) from a
// fresh client, then the same query from another fresh client: hash-only GET.
await step('apollo mutation, first time', async (log) => {
  const { data } = await apollo(log).mutate({
    mutation: CreateContextDocument,
    variables: { name: 'apq', metadata: { run } },
  });
  return data;
});
await step('apollo mutation, known hash', async (log) => {
  const { data } = await apollo(log).mutate({
    mutation: CreateContextDocument,
    variables: { name: 'apq again', metadata: { run } },
  });
  return data;
});
await step('apollo query, first time', async (log) => {
  const { data } = await apollo(log).query({ query: ContextsDocument, variables: listVariables, fetchPolicy: 'network-only' });
  return data;
});
await step('apollo query, known hash', async (log) => {
  const { data } = await apollo(log).query({ query: ContextsDocument, variables: listVariables, fetchPolicy: 'network-only' });
  return data;
});

// urql: its retry after PersistedQueryNotFound stays a GET (query text in the URL) while
// the URL is within its limit (2,048 characters): the contexts list. A chat page with
// every message's parts is longer, and its text goes in a POST.
await step('urql query, first time', async (log) => {
  const result = await urql(log).query(ContextsDocument, listVariables).toPromise();
  if (result.error) throw result.error;
  return result.data;
});
await step('urql query, known hash', async (log) => {
  const result = await urql(log).query(ContextsDocument, listVariables).toPromise();
  if (result.error) throw result.error;
  return result.data;
});
const created = steps['apollo mutation, first time']?.data as { createContext?: { id: string } } | null;
const historyVariables = { contextId: created?.createContext?.id ?? '00000000-0000-0000-0000-000000000000', last: 5 };
await step('urql long query, first time', async (log) => {
  const result = await urql(log).query(ChatHistoryDocument, historyVariables).toPromise();
  if (result.error) throw result.error;
  return result.data;
});

console.log(JSON.stringify({ url, run, steps }));
