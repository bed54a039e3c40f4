// The Python quick-start of ServiceNow/hdlm, ported line for line:
//
//   model, cfg, device, accelerator, metaschedule = smart_model_loader(
//       model_path="hdlm-group/hdlm-base-epsilon-0.01", model_type="auto", device="cuda")
//   tokenizer = GPT2TokenizerFast.from_pretrained('gpt2')
//   prompt_ids = tokenizer.encode("The future of artificial intelligence", return_tensors='pt')
//   generated = full_diff(model=model, prompt=prompt_ids, batch_size=1, alg='acs',
//                         steps=512, temperature=1.0, context_length=1024, device=device)
//   print(tokenizer.decode(generated[0], skip_special_tokens=True))
//
// Usage: node examples/quickstart.mjs [modelPath] [prompt]
//   modelPath defaults to the embedded demo model (works offline); pass
//   hdlm-group/hdlm-base-epsilon-0.01 to download the released base model.
import { smartModelLoader, fullDiff, tokenizer, DEMO_MODEL_PATH } from 'hdlm';

const modelPath = process.argv[2] ?? DEMO_MODEL_PATH;
const prompt = process.argv[3] ?? 'The future of artificial intelligence';

// Also in the result, as upstream returns them: cfg (the training config) and metaschedule.
const { model, device } = await smartModelLoader({
  modelPath, modelType: 'auto', device: 'auto' }); // 'auto': CUDA when available, else CPU
const promptIds = tokenizer.encode(prompt);
// The base models have length 1024 (upstream: steps=512, context_length=1024); the demo model 256.
const contextLength = Math.min(1024, model.length);
const generated = await fullDiff({ model, prompt: promptIds, batchSize: 1, alg: 'acs',
  steps: contextLength / 2, temperature: 1.0, contextLength, device });
console.log(tokenizer.decode(generated[0], { skipSpecialTokens: true }));
model.dispose();
