"""Chinese titles and summaries for people on duty. Pseudonyms only: no personal data is ever here."""

from __future__ import annotations

STATUS_CN = {
    "suspected": "疑似", "confirmed": "确诊", "asymptomatic": "无症状感染者", "close_contact": "密切接触者",
    "excluded": "排除", "recovered": "治愈", "deceased": "死亡",
}
POST_CN = {"principal": "主要负责同志", "in_charge": "分管负责同志", "duty_officer": "值班人员"}
SEVERITY_CN = {"I": "I级（特别重大）", "II": "II级（重大）", "III": "III级（较大）", "IV": "IV级（一般）"}
ACTION_CN = {"released": "已放行", "referred": "已转诊", "quarantined": "已隔离"}


def fever(checkpoint: str, temperature: float, origin: str | None, high_risk: bool) -> tuple[str, str]:
    title = f"{checkpoint}发现发热人员（{temperature:.1f}℃）"
    if high_risk:
        title += f"，来自高风险地区{origin}"
    summary = f"{checkpoint}体温筛查发现体温{temperature:.1f}℃人员" + (f"，来自{origin}" if origin else "")
    return title, summary


def arrival(checkpoint: str, origin: str, destination: str) -> tuple[str, str]:
    return (f"{checkpoint}：高风险地区（{origin}）来人入境",
            f"{checkpoint}登记来自{origin}的入境人员，无发热，目的地{destination or '未填报'}，"
            "请落实排查与居家观察")


def imported(region: str, status: str, origin: str, left: str) -> tuple[str, str]:
    return (f"{region}报告输入性{STATUS_CN[status]}病例",
            f"病例有高风险地区{origin}旅居史（{left}离开），请开展流调与密接追踪")


def cluster(region: str, township: str, count: int) -> tuple[str, str]:
    return (f"{region}{township}出现聚集性疫情（{count}例）",
            f"{region}{township}在窗口期内报告{count}例确诊或无症状病例，请启动聚集性疫情处置")


def contact(checkpoint: str, status: str) -> tuple[str, str]:
    return (f"{STATUS_CN[status]}病例曾经过{checkpoint}",
            f"{STATUS_CN[status]}病例在窗口期内曾在{checkpoint}登记，请追踪同时段通行人员")


def late(minutes: int, deadline: int) -> tuple[str, str]:
    return (f"病例报告超时（{minutes}分钟，时限{deadline}分钟）",
            f"病例从诊断到网络直报用时{minutes}分钟，超过{deadline}分钟法定时限，请督促整改")


def duty_gap(unit: str, post: str, since: str) -> tuple[str, str]:
    return (f"{unit}{POST_CN[post]}岗位无人值守",
            f"{unit}自{since}起无{POST_CN[post]}在岗，请立即补位")


def silent(checkpoint: str, minutes: int, since: str) -> tuple[str, str]:
    return (f"{checkpoint}超过{minutes}分钟无上报",
            f"{checkpoint}自{since}起无任何筛查记录或心跳，请核实是否在岗、是否漏检")
