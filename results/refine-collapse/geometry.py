import sys, torch, torch.nn.functional as F
from dcr.models import load_model
from dcr.refine.config import RefineConfig
from dcr.refine.data import build_data
from dcr.refine.features import encode_prompts, layer_forward, pool
name, layer = sys.argv[1], int(sys.argv[2])
c = RefineConfig(model=name)
data = build_data(c.data_dir, 0.2, 0, 0, 2.0, None, c.eval_toxic)
model, tok = load_model(name, dtype="bf16")
def feats(ps, how):
    out = []
    for s in range(0, len(ps), 16):
        b = encode_prompts(tok, ps[s:s+16], "auto", 128)
        with torch.no_grad():
            h, _ = layer_forward(model, b["input_ids"], b["attention_mask"], layer)
        out.append(pool(h.float(), b["attention_mask"], how))
    return torch.cat(out)
n = 64
safe_p = [r.prompt for r in data.seemingly[:n]]; tox_p = [r.prompt for r in data.toxic[:n]]
for how in ("last", "mean"):
    a, b = feats(safe_p, how), feats(tox_p, how)
    x = torch.cat([a, b])
    def cs(u, v):
        u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
        return (u @ v.T)
    print(how, "norm mean", x.norm(dim=-1).mean().item())
    sq = (x**2).mean(0); top = sq.topk(5)
    print(how, "top5 dims", top.indices.tolist(), "share of sq norm", (top.values.sum()/sq.sum()).item())
    print(how, "raw within safe %.3f within tox %.3f cross %.3f" % (cs(a,a).mean(), cs(b,b).mean(), cs(a,b).mean()))
    mu = x.mean(0)
    print(how, "centered within safe %.3f within tox %.3f cross %.3f" % (cs(a-mu,a-mu).mean(), cs(b-mu,b-mu).mean(), cs(a-mu,b-mu).mean()))
    keep = torch.ones(x.shape[1], dtype=bool); keep[top.indices] = False
    print(how, "drop top5 cross %.3f within safe %.3f" % (cs(a[:,keep],b[:,keep]).mean(), cs(a[:,keep],a[:,keep]).mean()))
