#include "engine/samplers/samplers.h"

#include "engine/samplers/common.h"

namespace hdlm {

EpsilonSampler choose_epsilon_sampler(const SampleOptions& o) {
  switch (o.mode) {
    case EpsilonMode::FullDiffShifted: return EpsilonSampler::FullShifted;
    case EpsilonMode::SemiDiffShifted: return EpsilonSampler::SemiShifted;
    case EpsilonMode::SemiDiff: return o.fast ? EpsilonSampler::Fast : EpsilonSampler::Reference;
    case EpsilonMode::FullDiff:
      if (!o.fast) return EpsilonSampler::Reference;
      // Host-side selection needs selections that do not depend on the logits (original, acs)
      // and one forward per step (no guidance batch).
      if (o.cfg_scale <= 0 && (o.alg == Algorithm::Original || o.alg == Algorithm::Acs)) {
        return EpsilonSampler::HostSelected;
      }
      return EpsilonSampler::Fast;
  }
  return EpsilonSampler::Reference;
}

at::Tensor run_epsilon_sampler(EpsilonSampler which, const EpsilonSamplerModel& model, const SampleOptions& o,
                               const at::Device& device, const std::atomic<bool>& abort, const StepCallback& on_step) {
  switch (which) {
    case EpsilonSampler::Reference: return run_full_semi_reference(model.forward, o, device, abort, on_step);
    case EpsilonSampler::Fast: return run_full_semi_fast(model.fast(), o, device, abort, on_step);
    case EpsilonSampler::HostSelected: return run_host_selected(model.fast(), o, device, abort, on_step);
    case EpsilonSampler::FullShifted: return run_full_diff_shifted(model.forward, o, device, abort, on_step);
    case EpsilonSampler::SemiShifted: return run_semi_diff_shifted(model.forward, o, device, abort, on_step);
  }
  throw EngineError("HDLM_NATIVE", "unknown sampler");
}

}  // namespace hdlm
