// metascheduleQuery(spec, query): the engine's metaschedule code (engine/metaschedule.h), the very
// code the samplers use, for lib/metaschedule.ts.
//   query.kind 'info' {n} → {worthless, width, maxStep};
//   'step' {k, n} → {levels: Int32Array, numSettled, relevantLength};
//   'plan' {k, n, eps, contextAttention, blockAttention, autoregressive} → {t, den, act, settled, mask}.
#include "engine/metaschedule.h"
#include "napi/addon.h"
#include "napi/convert.h"
#include "napi/options.h"

namespace hdlm {
namespace js {

Napi::Value MetascheduleQuery(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject())
    throw_type(env, "metascheduleQuery(spec, query)");
  auto spec = read_schedule(env, info[0].As<Napi::Object>());
  auto q = info[1].As<Napi::Object>();
  const auto kind = get_string(q, "kind");
  try {
    MetaSchedule ms(spec);
    auto out = Napi::Object::New(env);
    if (kind == "info") {
      out.Set("worthless", to_number(env, ms.worthless()));
      out.Set("width", to_number(env, ms.width()));
      out.Set("maxStep", to_number(env, ms.max_step(get_int(q, "n"))));
      return out;
    }
    const auto k = get_int(q, "k"), n = get_int(q, "n");
    if (k < 0 || n < 0 || n > (int64_t{1} << 20)) throw_type(env, "k >= 0 and 0 <= n <= 2^20");
    if (kind == "step") {
      auto lev = ms.levels(k, n);
      out.Set("levels", to_int32_array(env, std::vector<int32_t>(lev.begin(), lev.end())));
      out.Set("numSettled", to_number(env, ms.num_settled(k)));
      out.Set("relevantLength", to_number(env, ms.relevant_length(k)));
      return out;
    }
    if (kind == "plan") {
      if (n > 8192) throw_type(env, "n <= 8192 for an attention-mask plan");
      const auto ctx = read_context(env, get_string(q, "contextAttention"));
      const auto blk = read_block(env, get_string(q, "blockAttention"));
      const double eps = get_number(q, "eps");
      const bool ar = get(q, "autoregressive").ToBoolean();
      if (ar && n < 1) throw_type(env, "n >= 1 for the autoregressive plan");
      auto p = ar ? t_and_mask_ar(ms, k, n, eps, ctx, blk) : t_and_mask(ms, k, n, eps, ctx, blk);
      out.Set("t", to_float32_array(env, p.t));
      out.Set("den", to_uint8_array(env, p.den));
      out.Set("act", to_uint8_array(env, p.act));
      out.Set("settled", to_uint8_array(env, p.settled));
      out.Set("mask", to_uint8_array(env, p.mask));
      return out;
    }
    throw_type(env, "query kind 'info', 'step' or 'plan'");
  } catch (const EngineError& e) {
    throw engine_error(env, e);
  }
}

}  // namespace js
}  // namespace hdlm
