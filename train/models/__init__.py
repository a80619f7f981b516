"""The policy's parts: a VLM backbone, its tokenizer and image transforms, the DiT action head."""
