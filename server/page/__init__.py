"""The page for people: a search box that takes any ID and the views of a container's and a task's whole life,
rendered on the server (``views``), from what the input was understood as (``classify``) and what the store holds
(``lookup``), with a timeline drawn as SVG (``timeline``) and the state in words (``wording``)."""
