#!/usr/bin/env python3
"""Reference vectors from Hugging Face PEFT for the Go tests in adapterfile/peft_test.go.

    python3 make_reference.py IN OUT

IN is adapterfile/testdata/peft/in (written by `go test ./adapterfile -run
TestPEFTInputsUpToDate -update_peft_inputs`): a tiny LLaMA and a tiny RoBERTa
as Hugging Face directories, adapters saved by lily-go (IN/ours/*) and
inputs.json. The script, on the CPU, in float64 and float32:

  1. loads every adapter of IN/ours with PeftModel.from_pretrained, records
     PEFT's warnings and compares the file's keys with PEFT's state dict;
  2. creates PEFT's own Lily and LoRA adapters for both models, trains them
     three AdamW steps and saves them with save_pretrained (OUT/peft_adapters.tar);
  3. for every adapter of both kinds records the logits of the inputs and the
     gradients of sum(logits * sin(0.7*i + 0.3)) with respect to every trainable
     parameter (OUT/reference.safetensors), and the base models' logits.

OUT/report.json holds the versions, warnings, key checks and any errors; each
part runs on even if another fails. Attention is SDPA's (transformers' eager
attention takes its softmax in float32). In float64 the script replaces two
LLaMA modules that round to float32 even in a float64 model, the rotary
embedding (angles) and LlamaRMSNorm, by the same formulas in float64;
float32 runs are stock.
"""

import json
import math
import os
import sys
import tarfile
import tempfile
import traceback
import types
import warnings
import logging
import shutil
import platform

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
IN = os.path.abspath(sys.argv[1])
OUT = os.path.abspath(sys.argv[2])
FALLBACK = os.environ.get("PEFT_FALLBACK_SRC")  # used only if the installed PEFT lacks Lily

report = {"versions": {}, "notes": [], "cases": {}, "saved": {}, "diagnostics": {}, "errors": {}}
tensors = {}


def log(*a):
    print(*a, flush=True)


def err(part, e):
    tb = traceback.format_exc()
    log(f"ERROR in {part}: {e}\n{tb}")
    report["errors"][part] = f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------- imports
import importlib.metadata as md


def version_tuple(v):
    out = []
    for p in v.split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


try:
    installed = md.version("peft")
except Exception:
    installed = None
report["versions"]["peft_installed"] = installed
if (installed is None or version_tuple(installed) < (0, 19, 0)) and FALLBACK and os.path.isdir(FALLBACK):
    sys.path.insert(0, FALLBACK)
    report["notes"].append(f"installed peft {installed} lacks Lily; using the source tree {FALLBACK}")

import torch
import transformers
import safetensors
from safetensors.torch import load_file, save_file
import peft
from peft import PeftModel, get_peft_model, LoraConfig
from peft.utils import get_peft_model_state_dict

try:
    from peft import LilyConfig
except Exception as e:  # noqa: BLE001
    LilyConfig = None
    report["errors"]["import LilyConfig"] = f"peft {peft.__version__} has no LilyConfig: {e}"

from transformers import LlamaForCausalLM, RobertaForSequenceClassification

report["versions"].update({
    "python": platform.python_version(),
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "peft": peft.__version__,
    "peft_file": peft.__file__,
    "safetensors": safetensors.__version__,
})
log("versions:", json.dumps(report["versions"]))
torch.set_num_threads(4)
torch.manual_seed(0)

F64, F32 = torch.float64, torch.float32
DTYPES = {"f64": F64, "f32": F32}
INPUTS = json.load(open(os.path.join(IN, "inputs.json")))


# ---------------------------------------------------------------- capture
class Capture:
    """Records Python warnings and transformers/peft log records."""

    def __enter__(self):
        self.records = []
        self._w = warnings.catch_warnings(record=True)
        self.wlist = self._w.__enter__()
        warnings.simplefilter("always")
        cap = self

        class H(logging.Handler):
            def emit(self, record):
                cap.records.append(f"{record.name}: {record.getMessage()}")

        self.handler = H(level=logging.WARNING)
        self.loggers = [logging.getLogger("transformers"), logging.getLogger("peft")]
        for lg in self.loggers:
            lg.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        for lg in self.loggers:
            lg.removeHandler(self.handler)
        self._w.__exit__(*exc)
        self.messages = [f"{w.category.__name__}: {w.message}" for w in self.wlist] + self.records
        return False


# ---------------------------------------------------------------- models
def f64_exact(model):
    """Makes a float64 LLaMA compute in float64 throughout: transformers
    computes the rotary angles in float32 and LlamaRMSNorm casts the hidden
    states to float32, which limits agreement to ~1e-7."""
    cfg = json.load(open(os.path.join(IN, "llama", "config.json")))
    theta = float(cfg["rope_theta"])
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=F64) / hd))

    def rope(self, x, position_ids=None, *args, **kwargs):
        freqs = position_ids[:, :, None].to(F64) * inv[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        scale = float(getattr(self, "attention_scaling", 1.0))
        return (emb.cos() * scale).to(x.dtype), (emb.sin() * scale).to(x.dtype)

    def norm(self, x, *args, **kwargs):
        eps = getattr(self, "variance_epsilon", None) or getattr(self, "eps", None) or cfg["rms_norm_eps"]
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    n = {"rope": 0, "rmsnorm": 0}
    for m in model.modules():
        name = type(m).__name__
        if name.endswith("RotaryEmbedding"):
            m.forward = types.MethodType(rope, m)
            n["rope"] += 1
        elif name.endswith("RMSNorm"):
            m.forward = types.MethodType(norm, m)
            n["rmsnorm"] += 1
    return n


def load_base(kind, dt, attn="sdpa", stock=False):
    cls = LlamaForCausalLM if kind == "llama" else RobertaForSequenceClassification
    path = os.path.join(IN, kind)
    try:
        try:
            model, info = cls.from_pretrained(path, dtype=dt, attn_implementation=attn, output_loading_info=True)
        except TypeError:
            model, info = cls.from_pretrained(path, torch_dtype=dt, attn_implementation=attn, output_loading_info=True)
    except (ValueError, ImportError) as e:
        if attn == "eager":
            raise
        report["notes"].append(f"{kind}: attn_implementation={attn} refused ({e}); eager instead")
        return load_base(kind, dt, "eager", stock)
    have = next(model.parameters()).dtype
    if have != dt:  # an older transformers may ignore dtype=
        report["notes"].append(f"{kind} loaded as {have}, cast to {dt}")
        model.to(dt)
    model.eval()
    if kind == "llama" and dt == F64 and not stock:
        report["diagnostics"]["llama_f64_modules_patched"] = f64_exact(model)
    info = {k: sorted(map(str, v)) for k, v in info.items() if v}
    return model, info


def forward(kind, model, dt):
    inp = INPUTS[kind]
    kw = {"input_ids": torch.tensor(inp["input_ids"], dtype=torch.long)}
    if kind == "roberta":
        kw["attention_mask"] = torch.tensor(inp["attention_mask"], dtype=torch.long)
    else:
        kw["use_cache"] = False
    logits = model(**kw).logits
    n = logits.numel()
    w = torch.sin(0.7 * torch.arange(n, dtype=F64) + 0.3).to(dt).reshape(logits.shape)
    return logits, (logits * w).sum()


def canon(name):
    """PEFT's parameter name → the adapter file's key without base_model.model."""
    name = name.removeprefix("base_model.model.")
    name = name.replace(".modules_to_save.default.", ".")
    name = name.replace(".default.", ".")
    return name


def mixing_hooks(model, key):
    """Diagnostics: records every Lily layer's mixing vector (PEFT's
    expert_probabilities, recomputed from the layer's input)."""
    hooks = []
    for name, m in model.named_modules():
        if not (hasattr(m, "lily_router") and "default" in getattr(m, "lily_router", {})):
            continue

        def hook(mod, args, out, name=name):
            a = mod.lily_A["default"]
            h = a(args[0].to(a.weight.dtype))
            p = torch.softmax(mod.lily_router["default"](h), dim=-1).reshape(-1, mod.num_B["default"]).mean(0)
            tensors[f"{key}.mix.{canon(name)}"] = p.detach().to(F64).clone()

        hooks.append(m.register_forward_hook(hook))
    return hooks


def record(case, dn, model, kind, dt, grads=True):
    """Stores logits and gradients of model under case.dn."""
    model.zero_grad(set_to_none=True)
    hooks = []
    if dn == "f64":
        try:
            hooks = mixing_hooks(model, f"{case}.{dn}")
        except Exception as e:  # noqa: BLE001
            err(f"mixing hooks {case}", e)
    try:
        logits, loss = forward(kind, model, dt)
    finally:
        for h in hooks:
            h.remove()
    tensors[f"{case}.{dn}.logits"] = logits.detach().to(F64).clone().contiguous()
    info = report["cases"].setdefault(f"{case}.{dn}", {})
    info["logits_dtype"] = str(logits.dtype)
    if not grads:
        return logits
    loss.backward()
    n_train = 0
    names = []
    for name, p in model.named_parameters():  # shared parameters appear once
        if not p.requires_grad:
            continue
        n_train += p.numel()
        names.append(canon(name))
        if p.grad is None:
            info.setdefault("no_grad", []).append(name)
            continue
        tensors[f"{case}.{dn}.grad.{canon(name)}"] = p.grad.detach().to(F64).clone().contiguous()
    info["trainable_params"] = n_train
    info["trainable"] = names
    info["param_dtypes"] = sorted({str(p.dtype) for _, p in model.named_parameters() if p.requires_grad})
    return logits


def key_check(model, adapter_dir, info):
    """Compares the file's keys and values with PEFT's state dict."""
    file_sd = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    peft_sd = get_peft_model_state_dict(model)
    info["missing_keys"] = sorted(set(peft_sd) - set(file_sd))
    info["unexpected_keys"] = sorted(set(file_sd) - set(peft_sd))
    worst = 0.0
    for k in set(file_sd) & set(peft_sd):
        a, b = file_sd[k].to(F64), peft_sd[k].detach().to(F64)
        if a.shape != b.shape:
            info.setdefault("shape_mismatch", []).append(f"{k}: file {list(a.shape)}, PEFT {list(b.shape)}")
            continue
        worst = max(worst, (a - b).abs().max().item())
    info["max_abs_file_minus_loaded"] = worst


def load_adapter(case, kind, adapter_dir, dn):
    dt = DTYPES[dn]
    base, _ = load_base(kind, dt)
    with Capture() as cap:
        model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=True)
    model.eval()
    info = report["cases"].setdefault(f"{case}.{dn}", {})
    info["load_warnings"] = cap.messages
    key_check(model, adapter_dir, info)
    return model


# ---------------------------------------------------------------- parts
def part_base():
    for kind in ("llama", "roberta"):
        for dn, dt in DTYPES.items():
            model, info = load_base(kind, dt)
            report["diagnostics"][f"{kind}.{dn}.base_loading_info"] = info
            record(f"{kind}-base", dn, model, kind, dt, grads=False)
            if dn == "f64":  # to localise a difference in the base model
                try:
                    inp = INPUTS[kind]
                    kw = {"input_ids": torch.tensor(inp["input_ids"], dtype=torch.long), "output_hidden_states": True}
                    if kind == "roberta":
                        kw["attention_mask"] = torch.tensor(inp["attention_mask"], dtype=torch.long)
                    with torch.no_grad():
                        hs = model(**kw).hidden_states
                    for i, h in enumerate(hs):
                        tensors[f"{kind}-base.f64.hidden.{i}"] = h.to(F64).clone().contiguous()
                except Exception as e:  # noqa: BLE001
                    err(f"hidden states {kind}", e)
        # How much transformers' own float64 paths differ (eager attention
        # takes its softmax in float32; stock LLaMA rounds rotary angles and
        # norms to float32): diagnostics only.
        for attn in ("eager", "sdpa"):
            for stock in ((False, True) if kind == "llama" else (False,)):
                try:
                    model, _ = load_base(kind, F64, attn=attn, stock=stock)
                    with torch.no_grad():
                        logits, _ = forward(kind, model, F64)
                    tensors[f"{kind}-base.f64-{'stock-' if stock else ''}{attn}.logits"] = logits.to(F64).clone().contiguous()
                except Exception as e:  # noqa: BLE001
                    err(f"base {kind} {attn} stock={stock}", e)


OURS = [("llama-lily", "llama"), ("llama-lily-once", "llama"), ("llama-lora", "llama"),
        ("roberta-lily", "roberta"), ("roberta-lora", "roberta")]


def part_ours(case, kind):
    d = os.path.join(IN, "ours", case)
    for dn, dt in DTYPES.items():
        model = load_adapter(case, kind, d, dn)
        record(case, dn, model, kind, dt)
        info = report["cases"][f"{case}.{dn}"]
        log(f"{case} {dn}: warnings {info['load_warnings']}, missing {len(info['missing_keys'])}, "
            f"unexpected {len(info['unexpected_keys'])}, file-vs-loaded {info['max_abs_file_minus_loaded']}")


def part_head_linears(case, kind):
    """Diagnostic: the same SEQ_CLS adapter with the head's linears in
    modules_to_save instead of the head (what lily-go wrote before); PEFT adds
    "classifier" itself. Records whether PeftModel.from_pretrained copes."""
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, case)
        shutil.copytree(os.path.join(IN, "ours", case), d)
        p = os.path.join(d, "adapter_config.json")
        cfg = json.load(open(p))
        cfg["modules_to_save"] = ["classifier.dense", "classifier.out_proj"]
        json.dump(cfg, open(p, "w"))
        base, _ = load_base(kind, F64)
        try:
            PeftModel.from_pretrained(base, d)
            outcome = "loaded"
        except Exception as e:  # noqa: BLE001
            outcome = f"{type(e).__name__}: {e}"
        report["diagnostics"][f"{case}.modules_to_save_head_linears"] = outcome
        log(f"{case} with modules_to_save {cfg['modules_to_save']}: {outcome}")


def peft_configs():
    out = []
    if LilyConfig is not None:
        out.append(("llama-lily", "llama", lambda: LilyConfig(
            r=4, stride_A=3, num_B=3, scaling=0.7, target_modules=["q_proj", "v_proj", "down_proj"],
            init_weights=False, task_type="CAUSAL_LM")))
    out.append(("llama-lora", "llama", lambda: LoraConfig(
        r=4, lora_alpha=6, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "o_proj"],
        init_lora_weights=False, task_type="CAUSAL_LM")))
    if LilyConfig is not None:
        out.append(("roberta-lily", "roberta", lambda: LilyConfig(
            r=4, stride_A=2, num_B=3, scaling=0.5, target_modules=["query", "value"],
            init_weights=False, task_type="SEQ_CLS")))
    out.append(("roberta-lora", "roberta", lambda: LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"],
        init_lora_weights=False, task_type="SEQ_CLS")))
    return out


def part_peft(name, kind, make, adapters_root):
    case = "peft-" + name
    torch.manual_seed(1234)
    base, _ = load_base(kind, F64)
    model = get_peft_model(base, make())
    model.eval()
    if kind == "roberta":  # make the saved head differ from the base model's
        with torch.no_grad():
            for n, p in model.named_parameters():
                if ".modules_to_save.default." in n:
                    p.add_(0.3 * (2 * torch.rand_like(p) - 1))
    # "PEFT-trained": three AdamW steps on the reference loss.
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        _, loss = forward(kind, model, F64)
        loss.backward()
        opt.step()
    d = os.path.join(adapters_root, name)
    model.save_pretrained(d)
    report["saved"][case] = {
        "config": json.load(open(os.path.join(d, "adapter_config.json"))),
        "keys": sorted(load_file(os.path.join(d, "adapter_model.safetensors")).keys()),
    }
    trained = record(case, "f64-trained", model, kind, F64, grads=False)
    for dn, dt in DTYPES.items():
        reloaded = load_adapter(case, kind, d, dn)
        logits = record(case, dn, reloaded, kind, dt)
        if dn == "f64":
            report["diagnostics"][f"{case}.reload_max_abs_diff"] = (logits.detach() - trained.detach()).abs().max().item()
    log(f"{case}: saved {len(report['saved'][case]['keys'])} tensors; "
        f"warnings on reload {report['cases'][case + '.f64']['load_warnings']}")


def main():
    os.makedirs(OUT, exist_ok=True)
    try:
        part_base()
    except Exception as e:  # noqa: BLE001
        err("base", e)
    for case, kind in OURS:
        if "lily" in case and LilyConfig is None:
            report["errors"][case] = "skipped: no LilyConfig"
            continue
        try:
            part_ours(case, kind)
        except Exception as e:  # noqa: BLE001
            err(case, e)
        if kind == "roberta":
            try:
                part_head_linears(case, kind)
            except Exception as e:  # noqa: BLE001
                err(case + " head linears", e)
    adapters_root = tempfile.mkdtemp()
    for name, kind, make in peft_configs():
        try:
            part_peft(name, kind, make, adapters_root)
        except Exception as e:  # noqa: BLE001
            err("peft-" + name, e)
    try:
        with tarfile.open(os.path.join(OUT, "peft_adapters.tar"), "w") as tar:
            for name in sorted(os.listdir(adapters_root)):
                tar.add(os.path.join(adapters_root, name), arcname=os.path.join("peft", name))
    except Exception as e:  # noqa: BLE001
        err("tar", e)
    try:
        save_file(tensors, os.path.join(OUT, "reference.safetensors"), metadata={"format": "pt"})
    except Exception as e:  # noqa: BLE001
        err("save tensors", e)
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True, default=str)
    log(f"done: {len(tensors)} tensors, errors: {json.dumps(report['errors'])}")


if __name__ == "__main__":
    main()
