"""The architecture zoo: the family's architectures (`vqa/model/architectures/`) trained on the same data with
the same budget, measured and compared. `python -m vqa zoo` builds it into `weights/zoo/`."""

from vqa.zoo.members import MEMBERS, fit_to_budget, member_recipe
from vqa.zoo.run import train_zoo

__all__ = ["MEMBERS", "fit_to_budget", "member_recipe", "train_zoo"]
