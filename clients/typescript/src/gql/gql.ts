/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "mutation AppendFormatted($contextId: ID!, $format: MessageFormat!, $messages: JSON!, $expectedVersion: Int, $idempotencyKey: ID) {\n  appendFormatted(\n    contextId: $contextId\n    format: $format\n    messages: $messages\n    expectedVersion: $expectedVersion\n    idempotencyKey: $idempotencyKey\n  ) {\n    messages {\n      ...MessageFields\n    }\n    context {\n      id\n      latestVersion\n      messageCount\n      totalTokens\n      updatedAt\n    }\n  }\n}": typeof types.AppendFormattedDocument,
    "mutation AppendMessages($contextId: ID!, $messages: [MessageInput!]!, $expectedVersion: Int) {\n  appendMessages(\n    contextId: $contextId\n    messages: $messages\n    expectedVersion: $expectedVersion\n  ) {\n    messages {\n      ...MessageFields\n    }\n    context {\n      id\n      latestVersion\n      messageCount\n      totalTokens\n      updatedAt\n    }\n  }\n}": typeof types.AppendMessagesDocument,
    "query ChatHistory($contextId: ID!, $last: Int = 50, $before: String) {\n  context(id: $contextId) {\n    ...ContextFields\n    messages(last: $last, before: $before) {\n      totalCount\n      pageInfo {\n        hasPreviousPage\n        hasNextPage\n        startCursor\n        endCursor\n      }\n      nodes {\n        ...MessageFields\n      }\n    }\n  }\n}": typeof types.ChatHistoryDocument,
    "query Contexts($first: Int = 20, $after: String, $filter: ContextFilter, $orderBy: ContextOrder) {\n  contexts(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {\n    totalCount\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n    nodes {\n      ...ContextFields\n    }\n  }\n}": typeof types.ContextsDocument,
    "mutation CreateContext($name: String, $metadata: JSON, $messages: [MessageInput!]) {\n  createContext(name: $name, metadata: $metadata, messages: $messages) {\n    ...ContextFields\n  }\n}": typeof types.CreateContextDocument,
    "mutation ForkContext($id: ID!, $atVersion: Int, $name: String, $metadata: JSON) {\n  forkContext(id: $id, atVersion: $atVersion, name: $name, metadata: $metadata) {\n    ...ContextFields\n  }\n}": typeof types.ForkContextDocument,
    "fragment MessageFields on Message {\n  id\n  version\n  role\n  content\n  toolCallId\n  toolName\n  tokenCount\n  model\n  hasEmbedding\n  createdAt\n  status\n  usage {\n    inputTokens\n    outputTokens\n    cachedInputTokens\n    reasoningTokens\n  }\n  parts {\n    ...MessagePartFields\n  }\n}\n\nfragment MessagePartFields on MessagePart {\n  __typename\n  ... on TextPart {\n    text\n  }\n  ... on ImagePart {\n    url\n    mediaType\n    detail\n  }\n  ... on FilePart {\n    url\n    mediaType\n    filename\n  }\n  ... on ToolCallPart {\n    callId\n    name\n    arguments\n  }\n  ... on ToolResultPart {\n    callId\n    output\n    isError\n  }\n  ... on ReasoningPart {\n    text\n    encrypted\n    provider\n  }\n  ... on DataPart {\n    name\n    data\n  }\n}\n\nfragment ContextFields on Context {\n  id\n  name\n  metadata\n  createdAt\n  updatedAt\n  messageCount\n  totalTokens\n  latestVersion\n  forkVersion\n  deletedAt\n  parent {\n    id\n  }\n}": typeof types.MessageFieldsFragmentDoc,
    "subscription MessageAppended($contextId: ID!, $afterVersion: Int) {\n  messageAppended(contextId: $contextId, afterVersion: $afterVersion) {\n    ...MessageFields\n  }\n}": typeof types.MessageAppendedDocument,
    "query SimilarMessages($embedding: [Float!], $text: String, $first: Int = 10, $scope: SearchScope = ALL, $contextId: ID, $roles: [MessageRole!], $maxDistance: Float) {\n  similarMessages(\n    embedding: $embedding\n    text: $text\n    first: $first\n    scope: $scope\n    contextId: $contextId\n    roles: $roles\n    maxDistance: $maxDistance\n  ) {\n    distance\n    message {\n      ...MessageFields\n      context {\n        id\n        name\n      }\n    }\n  }\n}": typeof types.SimilarMessagesDocument,
};
const documents: Documents = {
    "mutation AppendFormatted($contextId: ID!, $format: MessageFormat!, $messages: JSON!, $expectedVersion: Int, $idempotencyKey: ID) {\n  appendFormatted(\n    contextId: $contextId\n    format: $format\n    messages: $messages\n    expectedVersion: $expectedVersion\n    idempotencyKey: $idempotencyKey\n  ) {\n    messages {\n      ...MessageFields\n    }\n    context {\n      id\n      latestVersion\n      messageCount\n      totalTokens\n      updatedAt\n    }\n  }\n}": types.AppendFormattedDocument,
    "mutation AppendMessages($contextId: ID!, $messages: [MessageInput!]!, $expectedVersion: Int) {\n  appendMessages(\n    contextId: $contextId\n    messages: $messages\n    expectedVersion: $expectedVersion\n  ) {\n    messages {\n      ...MessageFields\n    }\n    context {\n      id\n      latestVersion\n      messageCount\n      totalTokens\n      updatedAt\n    }\n  }\n}": types.AppendMessagesDocument,
    "query ChatHistory($contextId: ID!, $last: Int = 50, $before: String) {\n  context(id: $contextId) {\n    ...ContextFields\n    messages(last: $last, before: $before) {\n      totalCount\n      pageInfo {\n        hasPreviousPage\n        hasNextPage\n        startCursor\n        endCursor\n      }\n      nodes {\n        ...MessageFields\n      }\n    }\n  }\n}": types.ChatHistoryDocument,
    "query Contexts($first: Int = 20, $after: String, $filter: ContextFilter, $orderBy: ContextOrder) {\n  contexts(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {\n    totalCount\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n    nodes {\n      ...ContextFields\n    }\n  }\n}": types.ContextsDocument,
    "mutation CreateContext($name: String, $metadata: JSON, $messages: [MessageInput!]) {\n  createContext(name: $name, metadata: $metadata, messages: $messages) {\n    ...ContextFields\n  }\n}": types.CreateContextDocument,
    "mutation ForkContext($id: ID!, $atVersion: Int, $name: String, $metadata: JSON) {\n  forkContext(id: $id, atVersion: $atVersion, name: $name, metadata: $metadata) {\n    ...ContextFields\n  }\n}": types.ForkContextDocument,
    "fragment MessageFields on Message {\n  id\n  version\n  role\n  content\n  toolCallId\n  toolName\n  tokenCount\n  model\n  hasEmbedding\n  createdAt\n  status\n  usage {\n    inputTokens\n    outputTokens\n    cachedInputTokens\n    reasoningTokens\n  }\n  parts {\n    ...MessagePartFields\n  }\n}\n\nfragment MessagePartFields on MessagePart {\n  __typename\n  ... on TextPart {\n    text\n  }\n  ... on ImagePart {\n    url\n    mediaType\n    detail\n  }\n  ... on FilePart {\n    url\n    mediaType\n    filename\n  }\n  ... on ToolCallPart {\n    callId\n    name\n    arguments\n  }\n  ... on ToolResultPart {\n    callId\n    output\n    isError\n  }\n  ... on ReasoningPart {\n    text\n    encrypted\n    provider\n  }\n  ... on DataPart {\n    name\n    data\n  }\n}\n\nfragment ContextFields on Context {\n  id\n  name\n  metadata\n  createdAt\n  updatedAt\n  messageCount\n  totalTokens\n  latestVersion\n  forkVersion\n  deletedAt\n  parent {\n    id\n  }\n}": types.MessageFieldsFragmentDoc,
    "subscription MessageAppended($contextId: ID!, $afterVersion: Int) {\n  messageAppended(contextId: $contextId, afterVersion: $afterVersion) {\n    ...MessageFields\n  }\n}": types.MessageAppendedDocument,
    "query SimilarMessages($embedding: [Float!], $text: String, $first: Int = 10, $scope: SearchScope = ALL, $contextId: ID, $roles: [MessageRole!], $maxDistance: Float) {\n  similarMessages(\n    embedding: $embedding\n    text: $text\n    first: $first\n    scope: $scope\n    contextId: $contextId\n    roles: $roles\n    maxDistance: $maxDistance\n  ) {\n    distance\n    message {\n      ...MessageFields\n      context {\n        id\n        name\n      }\n    }\n  }\n}": types.SimilarMessagesDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation AppendFormatted($contextId: ID!, $format: MessageFormat!, $messages: JSON!, $expectedVersion: Int, $idempotencyKey: ID) {\n  appendFormatted(\n    contextId: $contextId\n    format: $format\n    messages: $messages\n    expectedVersion: $expectedVersion\n    idempotencyKey: $idempotencyKey\n  ) {\n    messages {\n      ...MessageFields\n    }\n    context {\n      id\n      latestVersion\n      messageCount\n      totalTokens\n      updatedAt\n    }\n  }\n}"): (typeof documents)["mutation AppendFormatted($contextId: ID!, $format: MessageFormat!, $messages: JSON!, $expectedVersion: Int, $idempotencyKey: ID) {\n  appendFormatted(\n    contextId: $contextId\n    format: $format\n    messages: $messages\n    expectedVersion: $expectedVersion\n    idempotencyKey: $idempotencyKey\n  ) {\n    messages {\n      ...MessageFields\n    }\n    context {\n      id\n      latestVersion\n      messageCount\n      totalTokens\n      updatedAt\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation AppendMessages($contextId: ID!, $messages: [MessageInput!]!, $expectedVersion: Int) {\n  appendMessages(\n    contextId: $contextId\n    messages: $messages\n    expectedVersion: $expectedVersion\n  ) {\n    messages {\n      ...MessageFields\n    }\n    context {\n      id\n      latestVersion\n      messageCount\n      totalTokens\n      updatedAt\n    }\n  }\n}"): (typeof documents)["mutation AppendMessages($contextId: ID!, $messages: [MessageInput!]!, $expectedVersion: Int) {\n  appendMessages(\n    contextId: $contextId\n    messages: $messages\n    expectedVersion: $expectedVersion\n  ) {\n    messages {\n      ...MessageFields\n    }\n    context {\n      id\n      latestVersion\n      messageCount\n      totalTokens\n      updatedAt\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query ChatHistory($contextId: ID!, $last: Int = 50, $before: String) {\n  context(id: $contextId) {\n    ...ContextFields\n    messages(last: $last, before: $before) {\n      totalCount\n      pageInfo {\n        hasPreviousPage\n        hasNextPage\n        startCursor\n        endCursor\n      }\n      nodes {\n        ...MessageFields\n      }\n    }\n  }\n}"): (typeof documents)["query ChatHistory($contextId: ID!, $last: Int = 50, $before: String) {\n  context(id: $contextId) {\n    ...ContextFields\n    messages(last: $last, before: $before) {\n      totalCount\n      pageInfo {\n        hasPreviousPage\n        hasNextPage\n        startCursor\n        endCursor\n      }\n      nodes {\n        ...MessageFields\n      }\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query Contexts($first: Int = 20, $after: String, $filter: ContextFilter, $orderBy: ContextOrder) {\n  contexts(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {\n    totalCount\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n    nodes {\n      ...ContextFields\n    }\n  }\n}"): (typeof documents)["query Contexts($first: Int = 20, $after: String, $filter: ContextFilter, $orderBy: ContextOrder) {\n  contexts(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {\n    totalCount\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n    nodes {\n      ...ContextFields\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation CreateContext($name: String, $metadata: JSON, $messages: [MessageInput!]) {\n  createContext(name: $name, metadata: $metadata, messages: $messages) {\n    ...ContextFields\n  }\n}"): (typeof documents)["mutation CreateContext($name: String, $metadata: JSON, $messages: [MessageInput!]) {\n  createContext(name: $name, metadata: $metadata, messages: $messages) {\n    ...ContextFields\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation ForkContext($id: ID!, $atVersion: Int, $name: String, $metadata: JSON) {\n  forkContext(id: $id, atVersion: $atVersion, name: $name, metadata: $metadata) {\n    ...ContextFields\n  }\n}"): (typeof documents)["mutation ForkContext($id: ID!, $atVersion: Int, $name: String, $metadata: JSON) {\n  forkContext(id: $id, atVersion: $atVersion, name: $name, metadata: $metadata) {\n    ...ContextFields\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "fragment MessageFields on Message {\n  id\n  version\n  role\n  content\n  toolCallId\n  toolName\n  tokenCount\n  model\n  hasEmbedding\n  createdAt\n  status\n  usage {\n    inputTokens\n    outputTokens\n    cachedInputTokens\n    reasoningTokens\n  }\n  parts {\n    ...MessagePartFields\n  }\n}\n\nfragment MessagePartFields on MessagePart {\n  __typename\n  ... on TextPart {\n    text\n  }\n  ... on ImagePart {\n    url\n    mediaType\n    detail\n  }\n  ... on FilePart {\n    url\n    mediaType\n    filename\n  }\n  ... on ToolCallPart {\n    callId\n    name\n    arguments\n  }\n  ... on ToolResultPart {\n    callId\n    output\n    isError\n  }\n  ... on ReasoningPart {\n    text\n    encrypted\n    provider\n  }\n  ... on DataPart {\n    name\n    data\n  }\n}\n\nfragment ContextFields on Context {\n  id\n  name\n  metadata\n  createdAt\n  updatedAt\n  messageCount\n  totalTokens\n  latestVersion\n  forkVersion\n  deletedAt\n  parent {\n    id\n  }\n}"): (typeof documents)["fragment MessageFields on Message {\n  id\n  version\n  role\n  content\n  toolCallId\n  toolName\n  tokenCount\n  model\n  hasEmbedding\n  createdAt\n  status\n  usage {\n    inputTokens\n    outputTokens\n    cachedInputTokens\n    reasoningTokens\n  }\n  parts {\n    ...MessagePartFields\n  }\n}\n\nfragment MessagePartFields on MessagePart {\n  __typename\n  ... on TextPart {\n    text\n  }\n  ... on ImagePart {\n    url\n    mediaType\n    detail\n  }\n  ... on FilePart {\n    url\n    mediaType\n    filename\n  }\n  ... on ToolCallPart {\n    callId\n    name\n    arguments\n  }\n  ... on ToolResultPart {\n    callId\n    output\n    isError\n  }\n  ... on ReasoningPart {\n    text\n    encrypted\n    provider\n  }\n  ... on DataPart {\n    name\n    data\n  }\n}\n\nfragment ContextFields on Context {\n  id\n  name\n  metadata\n  createdAt\n  updatedAt\n  messageCount\n  totalTokens\n  latestVersion\n  forkVersion\n  deletedAt\n  parent {\n    id\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "subscription MessageAppended($contextId: ID!, $afterVersion: Int) {\n  messageAppended(contextId: $contextId, afterVersion: $afterVersion) {\n    ...MessageFields\n  }\n}"): (typeof documents)["subscription MessageAppended($contextId: ID!, $afterVersion: Int) {\n  messageAppended(contextId: $contextId, afterVersion: $afterVersion) {\n    ...MessageFields\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query SimilarMessages($embedding: [Float!], $text: String, $first: Int = 10, $scope: SearchScope = ALL, $contextId: ID, $roles: [MessageRole!], $maxDistance: Float) {\n  similarMessages(\n    embedding: $embedding\n    text: $text\n    first: $first\n    scope: $scope\n    contextId: $contextId\n    roles: $roles\n    maxDistance: $maxDistance\n  ) {\n    distance\n    message {\n      ...MessageFields\n      context {\n        id\n        name\n      }\n    }\n  }\n}"): (typeof documents)["query SimilarMessages($embedding: [Float!], $text: String, $first: Int = 10, $scope: SearchScope = ALL, $contextId: ID, $roles: [MessageRole!], $maxDistance: Float) {\n  similarMessages(\n    embedding: $embedding\n    text: $text\n    first: $first\n    scope: $scope\n    contextId: $contextId\n    roles: $roles\n    maxDistance: $maxDistance\n  ) {\n    distance\n    message {\n      ...MessageFields\n      context {\n        id\n        name\n      }\n    }\n  }\n}"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;