import json, sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1] if len(sys.argv) > 1 else '/tmp/perfprobe/results.jsonl'):
    if not line.startswith('{'): continue
    r = json.loads(line); tag = r['cfg'].get('tag', '?').replace(' r2', '')
    rows.setdefault(tag, []).append(r)
print(f"{'config':28s} {'events/s (runs)':24s} {'CPU s':14s} {'ev/CPU-s':16s} load")
for tag, rs in rows.items():
    print(f"{tag:28s} {' / '.join(str(r['eps']) for r in rs):24s} {' / '.join(str(r['cpu']) for r in rs):14s} {' / '.join(str(r['eps_cpu']) for r in rs):16s} {' '.join(r['load'] for r in rs)}")
