"""Remote code for a tiny random-init Qwen3-VL that answers InternVL's `chat` API.

Copied into a model folder by tests/annotate/test_internvideo.py and loaded by the internvideo
backend's own loading code (`AutoModel.from_pretrained(folder, trust_remote_code=True)`), so the
backend runs end to end on a CPU: InternVideo2.5's remote code has this `chat` signature, reads
`<image>` placeholders in the prompt and `system_message` from the model.

`config.forced_answers` (optional): the answers generation is constrained to, one per call (the
last repeats), token by token through `prefix_allowed_tokens_fn`, so a real forward pass produces
a chosen answer. Without it the random model says whatever it says.
"""

import torch
from transformers import Qwen3VLForConditionalGeneration


class TinyChatQwen3VL(Qwen3VLForConditionalGeneration):
    system_message = ""

    def chat(self, tokenizer, pixel_values, question, generation_config, history=None, return_history=False,
             num_patches_list=None, **_):
        history = list(history or [])
        turns = [("system", self.system_message)]
        for old_question, old_answer in history:
            turns += [("user", old_question), ("assistant", old_answer)]
        turns.append(("user", question))
        text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
        text += "<|im_start|>assistant\n"

        vision = self.config.vision_config
        patch, merge, tp = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        k, c, h, w = pixel_values.shape
        if text.count("<image>") != k or (num_patches_list is not None and sum(num_patches_list) != k):
            raise ValueError(f"{text.count('<image>')} <image> placeholders for {k} tiles")
        gh, gw = h // patch, w // patch
        text = text.replace("<image>", "<|vision_start|>" + "<|image_pad|>" * (gh * gw // merge**2) + "<|vision_end|>")
        # Qwen's patch layout: each frame repeated over the temporal patch, merge windows together.
        x = pixel_values.float().unsqueeze(1).expand(k, tp, c, h, w)
        x = x.reshape(k, tp, c, gh // merge, merge, patch, gw // merge, merge, patch)
        x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(k * gh * gw, c * tp * patch * patch)
        grid = torch.tensor([[1, gh, gw]] * k)

        ids = tokenizer(text, return_tensors="pt").input_ids
        eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
        kwargs = dict(generation_config)
        forced = list(getattr(self.config, "forced_answers", None) or [])
        calls = getattr(self, "chat_calls", 0)
        self.chat_calls = calls + 1
        if forced:
            answer = tokenizer(forced[min(calls, len(forced) - 1)]).input_ids + [eos]
            start = ids.shape[1]
            kwargs["prefix_allowed_tokens_fn"] = lambda _, seq: [answer[min(len(seq) - start, len(answer) - 1)]]
            kwargs["max_new_tokens"] = max(kwargs.get("max_new_tokens", 0), len(answer))
        out = self.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=x.to(self.dtype), image_grid_thw=grid,
            eos_token_id=eos, pad_token_id=eos, **kwargs,
        )
        response = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        history.append((question, response))
        return (response, history) if return_history else response
