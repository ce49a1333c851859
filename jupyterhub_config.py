# The hub's whole configuration comes from classroom.yaml (or $D2LHUB_CONFIG): the machine's
# facts are gathered (d2lhub.hub.facts), then turned into traits with no I/O (d2lhub.hub.traits).
from d2lhub.config import load
from d2lhub.hub import enginewatch, facts, traits
from d2lhub.state import config_path

classroom_file = config_path().resolve()
classroom = load(classroom_file)
machine = facts.gather(classroom, classroom_file)
traits.apply(c, classroom, machine)  # noqa: F821 -- `c` is JupyterHub's config
enginewatch.start(classroom, machine.network_name)  # packet rules back as soon as a restarted engine answers
