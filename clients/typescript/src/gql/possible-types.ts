
      export type PossibleTypesResultData = {
  "possibleTypes": {
    "MessagePart": [
      "DataPart",
      "FilePart",
      "ImagePart",
      "ReasoningPart",
      "TextPart",
      "ToolCallPart",
      "ToolResultPart"
    ],
    "Node": [
      "Context",
      "Message"
    ]
  }
};
      const result: PossibleTypesResultData = {
  "possibleTypes": {
    "MessagePart": [
      "DataPart",
      "FilePart",
      "ImagePart",
      "ReasoningPart",
      "TextPart",
      "ToolCallPart",
      "ToolResultPart"
    ],
    "Node": [
      "Context",
      "Message"
    ]
  }
};
      export default result;
    