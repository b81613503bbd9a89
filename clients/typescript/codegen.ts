// GraphQL Code Generator: typed documents for the operations in operations/,
// generated from the committed schema (../../schema.graphql, the one
// `ctxgraph export-schema` writes). Run `npm run codegen`; `npm run
// codegen:check` fails when src/gql/ is stale.
import type { CodegenConfig } from '@graphql-codegen/cli';
import { addTypenameSelectionDocumentTransform } from '@graphql-codegen/client-preset';

const config: CodegenConfig = {
  schema: '../../schema.graphql',
  documents: ['operations/*.graphql'],
  ignoreNoDocuments: false,
  generates: {
    './src/gql/': {
      preset: 'client',
      presetConfig: {
        fragmentMasking: false,
        // persisted-documents.json: the manifest a server in trusted-documents
        // mode loads (CTXGRAPH_TRUSTED_DOCUMENTS); each document also carries
        // its sha256 in document.__meta__.hash.
        persistedDocuments: { mode: 'embedHashInDocument', hashAlgorithm: 'sha256' },
      },
      // urql's and Apollo's caches add __typename to every selection set; adding
      // it here keeps the manifest's documents identical to what they send.
      documentTransforms: [addTypenameSelectionDocumentTransform],
      config: {
        enumsAsTypes: true,
        useTypeImports: true,
        strictScalars: true,
        scalars: {
          DateTime: 'string',
          JSON: 'unknown',
        },
      },
    },
    // possibleTypes of the MessagePart union (and the Node interface): what Apollo
    // Client's InMemoryCache and urql's graphcache need to match fragments on it.
    './src/gql/possible-types.ts': {
      plugins: ['fragment-matcher'],
      config: { useExplicitTyping: true },
    },
  },
};

export default config;
