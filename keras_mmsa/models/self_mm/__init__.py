"""Self-MM (Yu et al. 2021) and Self-MI (Nguyen et al. 2023): unimodal subtasks on generated unimodal labels."""

from keras_mmsa.models.self_mm.self_mm import SelfMI, SelfMM, UnimodalSubtask, unimodal_label_report

__all__ = ["SelfMI", "SelfMM", "UnimodalSubtask", "unimodal_label_report"]
