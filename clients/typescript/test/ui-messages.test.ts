// The UIMessages ctxgraph writes for AI_SDK_UI (api/formats/ai_sdk_ui.py) are valid for
// the AI SDK itself: its validateUIMessages accepts them, as useChat would. The fixture
// is what the converter wrote for a conversation with tool calls and their results;
// tests/test_formats.py keeps it current.
//
//   npm test
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { safeValidateUIMessages, validateUIMessages } from 'ai';
import type { UIMessage } from 'ai';

const fixture = new URL('./fixtures/ui-messages.json', import.meta.url);
const messages = JSON.parse(readFileSync(fixture, 'utf8')) as UIMessage[];

const validated = await validateUIMessages({ messages });
assert.deepEqual(validated, messages, 'validateUIMessages keeps them as they are');

const kinds = messages.flatMap((m) => m.parts.map((p) => p.type));
for (const kind of ['step-start', 'reasoning', 'text', 'file', 'tool-getWeather', 'dynamic-tool', 'source-url', 'data-weather']) {
  assert.ok(kinds.includes(kind as (typeof kinds)[number]), `the fixture has a ${kind} part`);
}
const states = messages.flatMap((m) => m.parts.flatMap((p) => ('state' in p ? [p.state] : [])));
for (const state of ['output-available', 'output-error', 'input-available']) {
  assert.ok(states.includes(state as (typeof states)[number]), `a tool part in state ${state}`);
}

// the check is a real one: a tool part in a state the SDK does not know is refused
const broken = structuredClone(messages);
const tool = broken.flatMap((m) => m.parts).find((p) => p.type === 'tool-getWeather');
assert.ok(tool);
(tool as { state: string }).state = 'finished';
const refused = await safeValidateUIMessages({ messages: broken });
assert.equal(refused.success, false, 'an unknown tool state is refused');

console.log(`ui-messages: ${messages.length} UIMessages (${kinds.length} parts) valid for ai's validateUIMessages`);
