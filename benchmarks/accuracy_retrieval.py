"""Retrieval tricks tried on the DEV groups beyond the global embedding (none was kept).

Database-side augmentation / query expansion, centring, PCA-whitening fitted on the DEV pair
originals, a lite2+mobilenetv2 concatenation, and R-MAC regional max-pooling (plus regional
max-similarity matching) on lite1 feature maps at 240 and 416 px. Numbers are recorded in
benchmarks/results/accuracy.md. Run: ``python benchmarks/accuracy_retrieval.py`` (needs the
embedding cache that ``benchmarks/accuracy.py`` fills; torch for the R-MAC part).
"""
import sys; from pathlib import Path; sys.path.insert(0, str(Path(__file__).parent))
from accuracy import *
from lookalike.evaluation import group_metrics_from_similarity
g=load_groups(DEV/"groups.csv"); dev=load_pairs(DEV/"pairs.csv")
def get(t):
    v,_=embed_all(t, list(dict.fromkeys([*dev.unique_paths(), *g.paths])), bench_settings()); return v
def m(E):
    r=group_metrics_from_similarity(E@E.T, g.groups); return f"R@1 {r.recall_at_1:.3f} mAP {r.map:.3f} NS {r.ns_score:.2f}"
def norm(x): return x/np.linalg.norm(x,axis=1,keepdims=True)
def dba(E,k=2,alpha=3):
    S=E@E.T; out=np.zeros_like(E)
    for i in range(len(E)):
        idx=np.argsort(-S[i])[:k+1]; w=np.maximum(S[i,idx],0)**alpha; out[i]=(w[:,None]*E[idx]).sum(0)
    return norm(out)
for t in [Trial("tf_efficientnet_lite0",224,"resize","gem"),Trial("tf_efficientnet_lite2",260,"crop","avg"),Trial("mobilenetv2_100",224,"resize","gem"),Trial("tf_efficientnet_lite2",260,"resize","gem")]:
    v=get(t); E=np.stack([v[str(p)] for p in g.paths]).astype(np.float64)
    print(t.name, "base", m(E), "| DBA k1", m(dba(E,1)), "| DBA k2", m(dba(E,2)))
    X=np.stack([v[str(p)] for p in dev.unique_paths() if "originals" in str(p)]).astype(np.float64)
    for shrink in [0.1, 1.0]:
        w=fit_whitening(X, shrink=shrink); print("   pcaw shrink",shrink, m(w(E)))
    # centering only
    print("   center", m(norm(E-X.mean(0))))
a=get(Trial("tf_efficientnet_lite2",260,"crop","avg")); b=get(Trial("mobilenetv2_100",224,"resize","gem"))
E=norm(np.hstack([np.stack([a[str(p)] for p in g.paths]),np.stack([b[str(p)] for p in g.paths])]))
print("concat lite2+mnv2", m(E))

# ---- R-MAC (regional max-pooling on the backbone's feature map)
import torch
from lookalike.models.registry import resolve_model
from lookalike.models.weights import require_weights
from lookalike.models.export import build_torch_model
from lookalike.evaluation import group_metrics_from_similarity
from lookalike.imaging import load_image
torch.set_num_threads(2)
settings=bench_settings()
g=load_groups(DEV/"groups.csv")
def rmac_regions(H, W, L=3):
    regs=[]
    for l in range(1, L+1):
        w = int(2*min(H,W)/(l+1))
        if w < 1: continue
        nh = max(1, int(round((H-w)/max(w*0.6,1)))+1) if H>w else 1
        nw = max(1, int(round((W-w)/max(w*0.6,1)))+1) if W>w else 1
        for i in np.linspace(0, H-w, nh).astype(int):
            for j in np.linspace(0, W-w, nw).astype(int):
                regs.append((i,j,w))
    return regs
def norm(x): return x/np.linalg.norm(x,axis=-1,keepdims=True).clip(1e-12)
for name,size in [("tf_efficientnet_lite1",240),("tf_efficientnet_lite1",416)]:
    spec=resolve_model(name); model=build_torch_model(spec, require_weights(spec, settings))
    pre=spec.preprocessing.with_size(size)
    feats=[]
    with torch.inference_mode():
        for i in range(0,len(g.paths),16):
            arr=pre.to_array([load_image(p) for p in g.paths[i:i+16]])
            feats.append(model.forward_features(torch.from_numpy(arr)).numpy())
    F=np.concatenate(feats)  # N C H W
    N,C,H,W=F.shape
    gem=norm((np.clip(F,1e-6,None)**3).mean((2,3))**(1/3))
    regs=rmac_regions(H,W)
    R=np.stack([F[:,:,i:i+w,j:j+w].max((2,3)) for i,j,w in regs],1)  # N R C
    R=norm(R)
    rmac=norm(R.sum(1))
    # regional max-sim matching: mean over query regions of best match in db regions
    def m(S): r=group_metrics_from_similarity(S,g.groups); return f"R@1 {r.recall_at_1:.3f} mAP {r.map:.3f} NS {r.ns_score:.2f}"
    print(name,size,"regions",len(regs),"gem",m(gem@gem.T),"| rmac",m(rmac@rmac.T), "| gem+rmac", m(norm(np.hstack([gem,rmac]))@norm(np.hstack([gem,rmac])).T))
    S=np.einsum('arc,bsc->abrs',R,R).max(3).mean(2); S=(S+S.T)/2
    print("   region-match", m(S))
